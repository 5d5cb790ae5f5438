"""Per-layer plots of an inspect/report document, drawn with matplotlib's Agg canvas.

Each function takes the JSON document and returns a PNG as base64 text (for a data: URI,
so the page can be mailed), or None when the document has nothing to draw. Figures are made
with the object API (Figure + FigureCanvasAgg), not pyplot: no global state, no display.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from mergesmith.errors import missing_extra
from mergesmith.report.reading import HIGH_CONFLICT, LOW_CONFLICT

WIDTH, HEIGHT, DPI = 10.0, 3.6, 100


def require_matplotlib(needed_for: str) -> None:
    """Fail early, naming the extra to install, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise missing_extra("matplotlib", "report", needed_for) from None


def figure(width: float = WIDTH, height: float = HEIGHT, dpi: int = DPI) -> Any:
    """A figure on matplotlib's Agg canvas (the one way mergesmith draws)."""
    require_matplotlib("drawing plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_base64(fig: Any) -> str:
    """The figure as PNG, base64 text for a data: URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def layer_ticks(data: dict[str, Any]) -> list[str]:
    return ["emb" if x["layer"] == "embed" else str(x["layer"]) for x in data["layers"]]


def _layer_axis(ax: Any, data: dict[str, Any]) -> list[int]:
    names = layer_ticks(data)
    xs = list(range(len(names)))
    step = max(1, len(names) // 24)  # keep tick labels readable for deep models
    ax.set_xticks(xs[::step], names[::step])
    ax.set_xlabel("layer")
    ax.grid(True, alpha=0.3)
    return xs


def _layer_plot(data: dict[str, Any]) -> tuple[Any, Any, list[int]]:
    """A figure with one axis over the document's layers: (figure, axis, x positions)."""
    fig = figure()
    ax = fig.add_subplot()
    return fig, ax, _layer_axis(ax, data)


def _finish(fig: Any, ax: Any, ylabel: str, title: str, **legend: Any) -> str:
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small", **legend)
    return png_base64(fig)


def _series(data: dict[str, Any], get: Any) -> list[float]:
    """One value per layer (NaN where absent, so lines break instead of lying)."""
    out = []
    for layer in data["layers"]:
        value = get(layer)
        out.append(float("nan") if value is None else float(value))
    return out


def _model_value(label: str, key: str) -> Any:
    return lambda layer: layer["models"].get(label, {}).get(key)


def _pair_value(a: str, b: str, key: str) -> Any:
    def get(layer: dict[str, Any]) -> Any:
        pair = next((p for p in layer.get("pairs", []) if (p["a"], p["b"]) == (a, b)), None)
        return pair[key] if pair else None
    return get


def _labels(data: dict[str, Any]) -> list[str]:
    return [m["label"] for m in data["models"]]


def _pairs(data: dict[str, Any]) -> list[tuple[str, str]]:
    labels = _labels(data)
    return [(a, b) for i, a in enumerate(labels) for b in labels[i + 1:]]


def delta_norms(data: dict[str, Any]) -> str | None:
    if not data.get("base"):
        return None
    fig, ax, xs = _layer_plot(data)
    for label in _labels(data):
        ax.plot(xs, _series(data, _model_value(label, "relative")), marker="o", label=label)
    return _finish(fig, ax, "|model - base| / |base|", "Task vector size per layer (relative delta norm)")


def cosine_heatmap(data: dict[str, Any]) -> str | None:
    pairs = _pairs(data)
    if not data.get("base") or not pairs:
        return None
    import numpy as np

    grid = np.array([_series(data, _pair_value(a, b, "cosine")) for a, b in pairs])
    fig = figure(height=max(2.2, 1.2 + 0.45 * len(pairs)))
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    names = layer_ticks(data)
    step = max(1, len(names) // 24)
    ax.set_xticks(range(0, len(names), step), names[::step])
    ax.set_yticks(range(len(pairs)), [f"{a} / {b}" for a, b in pairs])
    if grid.size <= 200:  # small grids: write the values in the cells
        for (row, col), value in np.ndenumerate(grid):
            if value == value:
                ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(value) > 0.6 else "black")  # readable on dark cells
    ax.set_xlabel("layer")
    ax.set_title("Cosine similarity of task vectors per layer (1 = same direction, 0 = unrelated)")
    fig.colorbar(image, ax=ax, shrink=0.9)
    return png_base64(fig)


def sign_conflicts(data: dict[str, Any]) -> str | None:
    pairs = _pairs(data)
    if not data.get("base") or not pairs:
        return None
    fig, ax, xs = _layer_plot(data)
    for a, b in pairs:
        ax.plot(xs, _series(data, _pair_value(a, b, "sign_conflicts")), marker="o", label=f"{a} / {b}")
    if len(_labels(data)) > 2:
        ax.plot(xs, _series(data, lambda x: x.get("sign_conflicts_any")), "k--", label="any two models")
    ax.axhline(0.5, color="grey", lw=1, ls=":", label="independent (50%)")
    ax.axhspan(HIGH_CONFLICT, 1.0, color="tab:red", alpha=0.06, label=f">= {HIGH_CONFLICT:.0%}: consider ties")
    ax.axhspan(0.0, LOW_CONFLICT, color="tab:green", alpha=0.06, label=f"< {LOW_CONFLICT:.0%}: linear is enough")
    ax.set_ylim(0, 1)
    return _finish(fig, ax, "share of shared entries",
                   "Sign conflicts: entries where both deltas are non-zero and disagree in sign")


def kept_energy(data: dict[str, Any]) -> str | None:
    if not data.get("base"):
        return None
    fig, ax, xs = _layer_plot(data)
    styles = ["-", "--", ":", "-."]
    for k, density in enumerate(data["densities"]):
        key = f"{density:g}"
        for n, label in enumerate(_labels(data)):
            values = _series(data, lambda x, lab=label, k=key: (x["models"].get(lab, {}).get("kept_energy") or {}).get(k))
            ax.plot(xs, values, ls=styles[k % len(styles)], color=f"C{n}", marker=".", label=f"{label} @ {key}")
    ax.set_ylim(0, 1.02)
    return _finish(fig, ax, "share of |delta|^2 kept",
                   "Task-vector energy kept by a magnitude trim at each density (what TIES keeps)", ncol=2)


def contributions(data: dict[str, Any]) -> str | None:
    if "merged" not in (data["layers"][0] if data["layers"] else {}):
        return None
    fig, ax, xs = _layer_plot(data)
    for n, label in enumerate(_labels(data)):
        nominal = _series(data, _model_value(label, "nominal_weight"))
        ax.plot(xs, nominal, color=f"C{n}", marker="o", label=f"{label}: recipe weight")
        measured = _series(data, lambda x, lab=label: x["merged"]["coefficients"].get(lab))
        if any(v == v for v in measured):
            ax.plot(xs, measured, color=f"C{n}", ls="--", marker="x", label=f"{label}: measured")
    ax.axhline(0, color="grey", lw=0.8)
    return _finish(fig, ax, "weight of the input", "Each input's contribution per layer (recipe weight; "
                   "measured = least-squares share of its task vector)")


def distances(data: dict[str, Any]) -> str | None:
    if "merged" not in (data["layers"][0] if data["layers"] else {}):
        return None
    fig, ax, xs = _layer_plot(data)
    for n, label in enumerate(_labels(data)):
        ax.plot(xs, _series(data, _model_value(label, "relative_distance")), color=f"C{n}", marker="o", label=label)
    if data.get("base"):
        ax.plot(xs, _series(data, lambda x: x["merged"]["relative_to_base"]), "k--", marker="s",
                label=f"{data['base']['label']} (base)")
    return _finish(fig, ax, "|merged - input| / |input|", "Distance of the merged weights to each input per layer")


def evaluation(scores: dict[str, dict[str, float]]) -> str | None:
    """Grouped bars: one group per task, one bar per model."""
    tasks = sorted({t for s in scores.values() for t in s})
    if not tasks:
        return None
    fig = figure()
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(scores))
    for n, (model, s) in enumerate(scores.items()):
        xs = [i + n * width for i in range(len(tasks))]
        ax.bar(xs, [s.get(t, float("nan")) for t in tasks], width=width, label=model)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(tasks))], tasks)
    ax.set_ylabel("score")
    ax.set_title("Evaluation results (eval.json)")
    ax.legend(loc="best", fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    return png_base64(fig)
