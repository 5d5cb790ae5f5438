"""One search per output folder: soup and evolve hold the folder's lock while they run, so a
second run into the same folder stops at once and leaves the first one's folder alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mergesmith.cli.main import main
from mergesmith.io.target import TargetLock


def _config(command: str, llama: dict[str, Path], tmp_path: Path) -> Path:
    (tmp_path / "t.txt").write_text("w1 w2 w3 " * 5)
    config = {"models": [str(llama["a"]), str(llama["b"])], "output": "out",
              "search": [{"type": "perplexity", "path": "t.txt"}]}
    if command == "evolve":
        config.update(base_model=str(llama["base"]), max_evals=2)
    path = tmp_path / f"{command}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("command", ["soup", "evolve"])
def test_a_second_search_into_a_folder_being_written_stops_and_leaves_it(
        command: str, llama: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if command == "evolve":
        pytest.importorskip("cma")
    config = _config(command, llama, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / f".mergesmith_{command}").write_text("")  # the first run's folder, nothing written yet
    with TargetLock(out):  # the first run, still going
        assert main([command, str(config)]) == 1
    err = capsys.readouterr().err
    assert "another mergesmith command is writing this target" in err and str(out) in err
    assert sorted(p.name for p in out.iterdir()) == [f".mergesmith_{command}"]  # not discarded
    assert main([command, str(config)]) == 0  # once the first is done, the folder is this run's
    assert (out / "report.json").is_file()
