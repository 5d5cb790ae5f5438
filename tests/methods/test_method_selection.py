"""Exact top-k selection (methods/selection.py) and chunking (methods/chunks.py)."""

from __future__ import annotations

import pytest
import torch

from mergesmith.methods.chunks import Workspace, chunk_spans, row_length
from mergesmith.methods.selection import find_cuts, top_k_mask


def _kth_largest(values: torch.Tensor, k: int) -> float:
    return float(values.reshape(-1).sort(descending=True).values[k - 1])


@pytest.mark.parametrize("n", [1000, 300_000])  # below and above the sampling size
@pytest.mark.parametrize("share", [0.001, 0.3, 0.5, 0.97, 1.0])
def test_threshold_is_exact(n: int, share: float) -> None:
    values = torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64).abs()
    k = max(1, int(share * n))
    (cut,), _ = find_cuts(lambda span: values[span], n, [k], chunk_spans(values))
    assert cut.threshold == _kth_largest(values, k)
    assert cut.ties == 1 and cut.ties_kept == 1


def test_several_cuts_and_sums_in_one_pass() -> None:
    values = torch.rand(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ks = [10, 200_000, 399_999]
    cuts, total = find_cuts(lambda span: values[span], values.numel(), ks, chunk_spans(values), sums=True)
    ordered = values.sort(descending=True).values
    for cut, k in zip(cuts, ks, strict=True):
        assert cut.threshold == float(ordered[k - 1])
        assert cut.top_sum == pytest.approx(float(ordered[:k].sum()), rel=1e-9)
    assert total == pytest.approx(float(values.sum()), rel=1e-9)


def test_top_k_mask_keeps_exactly_k_with_ties_resolved_by_position() -> None:
    values = torch.tensor([3.0, 1.0, 2.0, 2.0, 2.0, 0.0, 2.0])
    mask = top_k_mask(values, 3)
    assert mask.tolist() == [True, False, True, True, False, False, False]
    assert top_k_mask(values, 0).sum() == 0
    assert top_k_mask(values, 7).all()


def test_ties_at_the_threshold_are_split_across_chunks_in_order() -> None:
    values = torch.tensor([1.0] * 10 + [5.0] * 2)  # threshold 1.0 for k = 6: keep 4 of the ten 1.0s
    (cut,), _ = find_cuts(lambda span: values[span], 12, [6], [slice(0, 3), slice(3, 6), slice(6, 12)])
    assert (cut.threshold, cut.ties, cut.ties_kept) == (1.0, 10, 4)
    cursor = cut.cursor()
    mask = torch.cat([cursor.mask(values[s], torch.empty(s.stop - s.start)) for s in (slice(0, 3), slice(3, 6),
                                                                                         slice(6, 12))])
    assert mask.tolist() == [1.0] * 4 + [0.0] * 6 + [1.0] * 2


def test_a_bracket_missed_by_an_adversarial_layout_is_recovered_exactly() -> None:
    n = 1 << 18
    stride = (n // (1 << 16)) | 1  # the sample's stride: make every sampled entry 0
    values = torch.rand(n, generator=torch.Generator().manual_seed(3)) + 1.0
    values[::stride] = 0.0
    k = n // 2
    (cut,), _ = find_cuts(lambda span: values[span], n, [k], chunk_spans(values))
    assert cut.threshold == _kth_largest(values, k)
    assert int(top_k_mask(values, k).sum()) == k


def test_chunks_cover_the_tensor_in_whole_rows() -> None:
    tensor = torch.empty(1000, 300)
    spans = chunk_spans(tensor, chunk=4096)
    assert spans[0] == slice(0, 3900) and spans[-1].stop == 300_000
    assert all(s.start % 300 == 0 for s in spans)
    assert all(b.start == a.stop for a, b in zip(spans, spans[1:], strict=False))
    assert chunk_spans(torch.empty(7)) == [slice(0, 7)]
    assert row_length((4, 5, 6)) == 30 and row_length((9,)) == 9 and row_length(()) == 1
    assert chunk_spans(torch.empty(0, 5)) == []


def test_workspace_reuses_buffers() -> None:
    work = Workspace(torch.empty(3), 16)
    a = work.floats(0, 10)
    assert work.floats(0, 16).data_ptr() == a.data_ptr()
    assert work.floats(1, 4).data_ptr() != a.data_ptr()
    assert work.floats(0, 40).numel() == 40  # grows when asked for more
    assert work.index(5).dtype == torch.int64
