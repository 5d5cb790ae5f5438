"""Accept rules on scripted scores (signed weighted probabilities, lower is better)."""

from mergesmith.monster.strategy import accept, better

OLD = [0.5, 0.4, -0.2]


def test_cumulative():
    assert accept("cumulative", OLD, [0.6, 0.2, -0.2], 0)  # total 0.6 < 0.7
    assert not accept("cumulative", OLD, [0.5, 0.4, -0.1], 0)


def test_all_phrases():
    assert accept("all_phrases", OLD, [0.4, 0.3, -0.3], 0)
    assert not accept("all_phrases", OLD, [0.1, 0.1, -0.2], 0)  # last one only equal


def test_quantitive_counts_pairs():
    assert accept("quantitive", OLD, [0.49, 0.39, 5.0], 2)  # two improve, total worse
    assert not accept("quantitive", OLD, [0.49, 0.5, 5.0], 2)


def test_scripted_sequence_keeps_best():
    seq = [[0.5, 0.4, -0.25], [0.3, 0.4, -0.2], [0.6, 0.6, 0.0]]
    best = seq[0]
    for new in seq[1:]:
        if better("cumulative", best, new, 0):
            best = new
    assert best == seq[1]


def test_example_configs_parse():
    from pathlib import Path

    from mergesmith.monster.config import load_config

    root = Path(__file__).resolve().parents[2] / "examples" / "monster"
    cfg = load_config(root / "monster.yaml")
    assert cfg.models_to_merge == ["add", "reverse", "sort", "count"]
    assert cfg.merge_methods == ["lerp", "slerp", "slice", "cyclic", "gradient"]
    assert load_config(root / "mapper.yaml").top_k == 3
