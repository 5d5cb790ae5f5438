from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mergesmith.errors import CheckpointError, OptionsError, OutputError
from mergesmith.io.safetensors_format import read_header
from mergesmith.io.writer import OutSpec, ShardedWriter, layout_shards, parse_size


def _raw_file(path: Path, header: object, data: bytes = b"") -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_reads_headers_written_by_safetensors(tmp_path: Path) -> None:
    save_file({"a": torch.zeros(2, 3, dtype=torch.bfloat16), "b": torch.ones(4)}, tmp_path / "m.safetensors")
    tensors, meta = read_header(tmp_path / "m.safetensors")
    assert tensors["a"].dtype == "BF16" and tensors["a"].shape == (2, 3) and tensors["a"].nbytes == 12
    assert tensors["b"].numel == 4


@pytest.mark.parametrize(("header", "data", "needle"), [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "do not fit"),
    ({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unknown dtype"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "overlap"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}}, b"\0" * 8, "invalid shape"),
])
def test_bad_headers_are_named(tmp_path: Path, header: dict, data: bytes, needle: str) -> None:
    path = _raw_file(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(CheckpointError, match=needle) as info:
        read_header(path)
    assert str(path) in str(info.value)


def test_truncated_and_corrupt_files(tmp_path: Path) -> None:
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="truncated"):
        read_header(tmp_path / "short.safetensors")
    (tmp_path / "long.safetensors").write_bytes(struct.pack("<Q", 10**6) + b"{}")
    with pytest.raises(CheckpointError, match="beyond the file size"):
        read_header(tmp_path / "long.safetensors")
    (tmp_path / "json.safetensors").write_bytes(struct.pack("<Q", 4) + b"{{{{")
    with pytest.raises(CheckpointError, match="not JSON"):
        read_header(tmp_path / "json.safetensors")


@pytest.mark.parametrize(("text", "value"), [("5G", 5 * 10**9), ("500M", 5 * 10**8), ("2Gi", 2 * 2**30), ("1000", 1000), ("1.5K", 1500)])
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["huge", "-5M", "0"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(OptionsError):
        parse_size(text)


def test_shard_layout_keeps_order_and_limit() -> None:
    specs = [OutSpec(f"t{i}", "F32", (10,)) for i in range(5)]  # 40 bytes each
    assert [[s.name for s in shard] for shard in layout_shards(specs, 100)] == [["t0", "t1"], ["t2", "t3"], ["t4"]]


def test_sharded_output_round_trips_in_any_write_order(tmp_path: Path) -> None:
    tensors = {f"t{i}": torch.randn(3, 5).to(torch.bfloat16 if i % 2 else torch.float32) for i in range(6)}
    specs = [OutSpec(n, "BF16" if t.dtype == torch.bfloat16 else "F32", tuple(t.shape)) for n, t in tensors.items()]
    writer = ShardedWriter(tmp_path / "out", specs, shard_size=100).open()
    for name in reversed(list(tensors)):
        writer.write(name, tensors[name])
    writer.commit()
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    loaded: dict[str, torch.Tensor] = {}
    for shard in set(index["weight_map"].values()):
        loaded.update(load_file(tmp_path / "out" / shard))
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dir or lock left


def test_abort_leaves_nothing_and_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    (target / "mergesmith_manifest.json").write_text('{"versions": {"mergesmith": "0"}}')  # an earlier output
    writer = ShardedWriter(target, [OutSpec("a", "F32", (2,))], shard_size=100, overwrite=True).open()
    writer.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (target / "keep.txt").read_text() == "old"


def test_refuses_non_empty_target_and_second_writer(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "x").write_text("x")
    with pytest.raises(OptionsError, match="not empty"):
        ShardedWriter(target, [], shard_size=10).open()
    first = ShardedWriter(tmp_path / "t2", [OutSpec("a", "F32", (2,))], shard_size=100).open()
    with pytest.raises(OutputError, match="another merge"):
        ShardedWriter(tmp_path / "t2", [OutSpec("a", "F32", (2,))], shard_size=100).open()
    first.abort()


def test_add_file_cannot_escape_the_output(tmp_path: Path) -> None:
    writer = ShardedWriter(tmp_path / "out", [], shard_size=100).open()
    with pytest.raises(OutputError, match="outside"):
        writer.add_file("../evil.txt", "x")
    writer.abort()
    assert not (tmp_path / "evil.txt").exists()
