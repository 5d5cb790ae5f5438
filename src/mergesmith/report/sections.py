"""The sections of report.html: small HTML builders over the statistics document."""

from __future__ import annotations

import html
import json
from typing import Any

import mergesmith.report.plots as plots
from mergesmith.report.evals import EVAL_FILE, collect_evals
from mergesmith.report.reading import HIGH_CONFLICT, KEEP_TARGET, LOW_CONFLICT

MAX_ROWS = 60  # longer tables (skipped tensors) are cut, the JSON keeps everything

CSS = """body{font-family:system-ui,sans-serif;max-width:1060px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9em;color:#555}
nav a{margin-right:.8em}.note{color:#8a5a00}"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1%}" if pct else f"{value:.4g}"
    return _esc(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{_esc(title)}</h2>\n{body}\n</section>'


def _figure(png: str | None, alt: str, caption: str) -> str | None:
    if png is None:
        return None
    return (f'<figure><img alt="{_esc(alt)}" src="data:image/png;base64,{png}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _models_table(overall: dict[str, Any], densities: list[float]) -> str:
    merged = "merged" in overall
    rows = []
    for label, m in overall["models"].items():
        kept = [_fmt((m.get("kept_energy") or {}).get(f"{p:g}"), pct=True) for p in densities]
        rows.append([_esc(label), _fmt(m.get("relative")), _fmt(m.get("nonzero"), pct=True), *kept,
                     *([_fmt(m.get("relative_distance"))] if merged else [])])
    return table(["model", "relative delta norm", "non-zero deltas", *[f"energy kept @ {p:g}" for p in densities],
                  *(["relative distance of the merge"] if merged else [])], rows)


def summary(data: dict[str, Any]) -> str:
    items = "".join(f"<li>{_esc(line)}</li>" for line in data.get("summary", []))
    parts = [f"<ul>{items}</ul>" if items else '<p class="note">No base model: task-vector statistics '
             "need one; the plots show the recipe weights and distances only.</p>"]
    if data.get("method"):
        parts.insert(0, f"<p>merge method: <b>{_esc(data['method'])}</b></p>")
    base = data.get("base")
    parts.append(f"<p>base: <b>{_esc(base['label'])}</b> ({_esc(base.get('path'))})</p>" if base else "")
    parts.append(_models_table(data["overall"], data["densities"]))
    pairs = data["overall"].get("pairs", [])
    if pairs:
        parts.append(table(["pair (whole model)", "cosine", "sign conflicts", "both non-zero"],
                           [[_esc(f"{p['a']} / {p['b']}"), _fmt(p["cosine"]), _fmt(p["sign_conflicts"], True),
                             _fmt(p["overlap"], True)] for p in pairs]))
    return "\n".join(parts)


def recipe(text: str | None) -> str | None:
    return None if text is None else f"<pre>{_esc(text)}</pre>"


def manifest(data: dict[str, Any] | None) -> str | None:
    if data is None:
        return None
    public = {k: v for k, v in data.items() if not k.startswith("_")}
    rows = [[_esc(e.get("ref")), _esc(e.get("path")), _fmt(sum((e.get("files") or {}).values()) / 1e6)]
            for e in public.get("inputs", [])]
    facts = " ".join(f"{k}: <b>{_esc(public[k])}</b>" for k in ("method", "seed", "created") if k in public)
    versions = ", ".join(f"{k} {v}" for k, v in (public.get("versions") or {}).items())
    return (f"<p>{facts}</p>" + table(["input", "path", "size (MB)"], rows) + f"<p>versions: {_esc(versions)}</p>"
            f"<details><summary>manifest JSON</summary><pre>{_esc(json.dumps(public, indent=1))}</pre></details>")


PLOTS = [  # (section id, title, plot function, caption)
    ("delta-norms", "Task vector size per layer", plots.delta_norms,
     "|model − base| / |base| per layer. A layer far above the others is where a fine-tune changed most; "
     "in a linear merge it dominates."),
    ("cosine", "Cosine similarity of task vectors", plots.cosine_heatmap,
     "Per layer and pair of models. Near 0: unrelated changes (they add without much interference but an "
     "average halves each); near 1: the same change; negative: they undo each other."),
    ("sign-conflicts", "Sign conflicts", plots.sign_conflicts,
     f"Share of the entries where both deltas are non-zero and disagree in sign; 50% for unrelated task "
     f"vectors. At {HIGH_CONFLICT:.0%} or more consider TIES (sign election); below {LOW_CONFLICT:.0%} linear "
     "or task_arithmetic lose little."),
    ("kept-energy", "Energy kept at each density", plots.kept_energy,
     f"Share of |delta|² in the top density × n entries by magnitude: what a magnitude trim (TIES) keeps. "
     f"The summary advises the smallest density that keeps {KEEP_TARGET:.0%} in the layers concerned."),
    ("contributions", "Contribution of each input per layer", plots.contributions,
     "Solid: the weight the recipe's resolved parameters give each input (exact for linear and "
     "task_arithmetic, before trimming for TIES/DARE). Dashed: the measured least-squares coefficient c "
     "in merged − base ≈ Σ c·delta, i.e. how much of each task vector the merge really holds."),
    ("distances", "Distance of the merged weights to each input", plots.distances,
     "|merged − input| / |input| per layer; the base is dashed. The merge sits closest to the input "
     "with the smallest distance."),
]


def plot_sections(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(id, title, body) of each plot the document can draw."""
    out = []
    for sid, title, draw, caption in PLOTS:
        png = draw(data)
        if png is not None:
            out.append((sid, title, _figure(png, title, caption)))
    return out


def evaluation(dirs: dict[str, Any]) -> str | None:
    scores, notes = collect_evals(dirs)
    if not scores and not notes:
        return None
    tasks = sorted({t for s in scores.values() for t in s})
    rows = [[_esc(model), *[_fmt(s.get(t)) for t in tasks]] for model, s in scores.items()]
    parts = [table(["model", *tasks], rows)] if scores else []
    png = plots.evaluation(scores)
    if png:
        parts.append(_figure(png, "evaluation", f"Scores from each model directory's {EVAL_FILE}."))
    parts += [f'<p class="note">{_esc(n)}</p>' for n in notes]
    return "\n".join(parts)


def outliers(data: dict[str, Any]) -> str | None:
    found = data.get("outliers") or []
    if not found:
        return None
    return table(["model", "tensor", "relative delta", "× median"],
                 [[_esc(o["model"]), _esc(o["tensor"]), _fmt(o["relative"]), _fmt(o["times_median"])] for o in found])


def layers(data: dict[str, Any]) -> str:
    labels = [m["label"] for m in data["models"]]
    pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1:]]
    merged = bool(data["layers"]) and "merged" in data["layers"][0]
    headers = ["layer", *[f"{x} rel. delta" for x in labels], *[f"{a}/{b} cos" for a, b in pairs],
               *[f"{a}/{b} conflicts" for a, b in pairs], *([f"dist. {x}" for x in labels] if merged else [])]
    rows = []
    for layer in data["layers"]:
        found = {(p["a"], p["b"]): p for p in layer.get("pairs", [])}
        models = layer["models"]
        rows.append([_esc(layer["layer"]), *[_fmt(models.get(x, {}).get("relative")) for x in labels],
                     *[_fmt(found.get(p, {}).get("cosine")) for p in pairs],
                     *[_fmt(found.get(p, {}).get("sign_conflicts"), True) for p in pairs],
                     *([_fmt(models.get(x, {}).get("relative_distance")) for x in labels] if merged else [])])
    return table(headers, rows)


def skipped(data: dict[str, Any]) -> str | None:
    items = data.get("skipped") or []
    if not items:
        return None
    rows = [[_esc(s["tensor"]), _esc(s["model"]), _esc(s["reason"])] for s in items[:MAX_ROWS]]
    more = f"<p>… and {len(items) - MAX_ROWS} more (see the JSON)</p>" if len(items) > MAX_ROWS else ""
    return table(["tensor", "model", "reason"], rows) + more
