"""The demo's main job: merge the family's experts with every applicable method (defaults plus
a small lambda/density grid), evaluate every merge on every skill's held-out test set, and
report per-skill accuracy next to the base and the experts.

Merges run in memory (`merge_state_dicts`) into one resident model: no checkpoint is written
per candidate. Normalised accuracy of a merge on a skill = merge accuracy / that skill's
expert accuracy; the table's last column is its mean over skills.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mergesmith.demo.family import Family


@dataclass
class DemoResult:
    skills: list[str]
    rows: dict[str, dict[str, float]]  # name -> skill -> accuracy
    kinds: dict[str, str]  # name -> "base" | "expert" | "merge"
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # merge name -> grid values
    recipes: dict[str, Path] = field(default_factory=dict)  # merge name -> its recipe file
    seconds: float = 0.0

    def mean(self, name: str) -> float:
        return sum(self.rows[name][s] for s in self.skills) / len(self.skills)

    def normalised(self, name: str) -> float:
        """Mean over skills of accuracy / that skill's expert accuracy (FusionBench's measure)."""
        experts = {s: self.rows[f"expert:{s}"][s] for s in self.skills}
        return sum(self.rows[name][s] / max(experts[s], 1e-9) for s in self.skills) / len(
            self.skills
        )

    def ordered(self) -> list[str]:
        """Base and experts first, then the merges, best normalised accuracy first."""
        fixed = [n for n in self.rows if self.kinds.get(n) != "merge"]
        merges = [n for n in self.rows if self.kinds.get(n) == "merge"]
        return fixed + sorted(merges, key=lambda n: -self.normalised(n))

    def best_merge(self) -> str | None:
        merges = [n for n in self.ordered() if self.kinds.get(n) == "merge"]
        return merges[0] if merges else None

    def table(self) -> str:
        head = "| model | " + " | ".join(self.skills) + " | mean | normalised |"
        lines = [head, "|" + "---|" * (len(self.skills) + 3)]
        for name in self.ordered():
            cells = " | ".join(f"{self.rows[name][s]:.2f}" for s in self.skills)
            lines.append(
                f"| {name} | {cells} | {self.mean(name):.2f} | {self.normalised(name):.2f} |"
            )
        return "\n".join(lines)

    def to_json(self, settings_digest: str, build_seconds: float | None) -> dict[str, Any]:
        """results.json: the table, machine-readable."""
        models = [
            {
                "name": name,
                "kind": self.kinds.get(name, "merge"),
                "accuracy": dict(self.rows[name]),
                "mean": self.mean(name),
                "normalised": self.normalised(name),
                "recipe": str(self.recipes[name]) if name in self.recipes else None,
            }
            for name in self.ordered()
        ]
        return {
            "skills": list(self.skills),
            "models": models,
            "settings_digest": settings_digest,
            "build_seconds": build_seconds,
        }


def recipe_filename(name: str) -> str:
    """'ties λ=1.0 d=0.3' -> 'ties-lambda1.0-d0.3.yaml': a file name for a grid entry."""
    text = name.replace("λ=", "lambda").replace("=", "").replace(" ", "-")
    return "".join(c for c in text if c.isalnum() or c in "-_.") + ".yaml"


def merge_grid(family: Family, quick: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (recipe YAML, grid values). Every expert weighted equally."""
    experts = [str(p) for p in family.experts.values()]
    base = str(family.base)

    def recipe(method: str, per_model: str, shared: str = "", with_base: bool = True) -> str:
        params = f"\n    parameters: {{{per_model}}}" if per_model else ""
        models = "".join(f"  - model: {e}{params}\n" for e in experts)
        text = f"merge_method: {method}\nmodels:\n{models}"
        if with_base:
            text += f"base_model: {base}\n"
        return text + (f"parameters: {{{shared}}}\n" if shared else "")

    grid: dict[str, tuple[str, dict[str, Any]]] = {
        "linear": (recipe("linear", "weight: 1.0", with_base=False), {}),
        "model_stock": (recipe("model_stock", ""), {}),
    }
    if not quick:
        # Every other method that takes several models, at the parameters its docs suggest.
        # Not here: two-model methods (slerp, nuslerp, nearswap, arcee_fusion), passthrough,
        # the data-aware ones (bench/datamerge.py) and mergemonster (`mergesmith monster`).
        defaults = {
            "dare_linear": "weight: 1.0, density: 0.5",
            "breadcrumbs": "weight: 1.0, density: 0.9, gamma: 0.01",
            "breadcrumbs_ties": "weight: 1.0, density: 0.9, gamma: 0.01",
            "della": "weight: 1.0, density: 0.5, epsilon: 0.15",
            "della_linear": "weight: 1.0, density: 0.5, epsilon: 0.15",
            "sce": "",
            "multislerp": "weight: 1.0",
            "ram": "",
            "ramplus_tl": "",
        }
        for method, per_model in defaults.items():
            grid[method] = (recipe(method, per_model), {})
        grid["karcher"] = (recipe("karcher", "", with_base=False), {})
    lambdas = [1.0] if quick else [0.5, 1.0, 1.5]
    for lam in lambdas:
        grid[f"task_arithmetic λ={lam}"] = (
            recipe("task_arithmetic", "weight: 1.0", f"lambda: {lam}"),
            {"lambda": lam},
        )
        for density in [0.5] if quick else [0.3, 0.6]:
            for method in ("ties", "dare_ties"):
                grid[f"{method} λ={lam} d={density}"] = (
                    recipe(method, f"weight: 1.0, density: {density}", f"lambda: {lam}"),
                    {"lambda": lam, "density": density},
                )
    return grid


def run_demo(
    family: Family,
    *,
    quick: bool = False,
    seed: int = 0,
    limit: int | None = None,
    recipes_dir: Path | None = None,
    log: Any = None,
) -> DemoResult:
    """Evaluate the base, each expert and each merge of the grid on every skill.

    `recipes_dir`: where each merge's recipe is written (for `mergesmith merge`); `log`: a
    callable given one progress line per model (default: none).

    One torch thread: as fast as two for these tiny models on an idle machine (26 s vs 33 s
    for the full cached demo), while two threads collapsed when other processes shared the
    cores (the same demo took 572 s; monster measured 10 ms vs 340 ms per candidate).
    """
    from mergesmith.threads import torch_threads

    with torch_threads(1):
        return _run_demo(family, quick, seed, limit, recipes_dir, log or (lambda line: None))


def _run_demo(
    family: Family, quick: bool, seed: int, limit: int | None, recipes_dir: Path | None, log: Any
) -> DemoResult:
    from mergesmith.api import merge_state_dicts
    from mergesmith.evaluate import ExactMatchEvaluator, load_model
    from mergesmith.report.evals import save_eval

    start = time.perf_counter()
    evaluator = ExactMatchEvaluator(
        {s: family.test_sets[s] for s in family.skills}, limit=limit, device="cpu"
    )
    result = DemoResult(skills=family.skills, rows={}, kinds={})
    grid = merge_grid(family, quick)
    total = 1 + len(family.experts) + len(grid)

    def record(name: str, kind: str, scores: dict[str, float]) -> None:
        result.rows[name] = {s: scores[f"exact_match/{s}"] for s in family.skills}
        result.kinds[name] = kind
        log(f"[{len(result.rows)}/{total}] {name}")

    for name, kind, path in [("base", "base", family.base)] + [
        (f"expert:{skill}", "expert", path) for skill, path in family.experts.items()
    ]:
        scores = evaluator.evaluate(str(path))
        record(name, kind, scores)
        if limit is None:
            # The family's own scores beside each model, so `mergesmith report` on a merge
            # of the family shows the inputs' accuracy next to the merge's.
            save_eval(path, scores)
    resident = load_model(family.base, device="cpu")
    states, configs = _inputs(family)
    for name, (recipe, values) in grid.items():
        merged = merge_state_dicts(recipe, states, configs, seed=seed)
        resident.model.load_state_dict(merged, strict=False)
        record(name, "merge", evaluator.evaluate(resident.model, resident.tokenizer))
        result.params[name] = values
        if recipes_dir is not None:
            recipes_dir.mkdir(parents=True, exist_ok=True)
            result.recipes[name] = recipes_dir / recipe_filename(name)
            result.recipes[name].write_text(recipe, encoding="utf-8")
    result.seconds = time.perf_counter() - start
    return result


def _inputs(family: Family) -> tuple[dict[str, dict], dict[str, dict]]:
    from safetensors.torch import load_file

    states, configs = {}, {}
    for path in [family.base, *family.experts.values()]:
        states[str(path)] = load_file(path / "model.safetensors")
        configs[str(path)] = json.loads((path / "config.json").read_text())
    return states, configs


def write_report(result: DemoResult, out: Path) -> Path:
    """report.html: the table, a heatmap of accuracy by model x skill, accuracy vs lambda."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    names = result.ordered()
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(result.skills), 0.35 * len(names) + 1.2))
    data = [[result.rows[n][s] for s in result.skills] for n in names]
    im = ax.imshow(data, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(result.skills)), result.skills)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    fig.colorbar(im, ax=ax, label="accuracy")
    ax.set_title("Accuracy by model and skill (held-out test sets)")
    images.append(_png(fig, plt, io, base64))
    lam_rows = {n: p for n, p in result.params.items() if "lambda" in p}
    if lam_rows:
        fig, ax = plt.subplots(figsize=(6, 4))
        for method in sorted(
            {
                n.split(" ")[0] + (f" d={p['density']}" if "density" in p else "")
                for n, p in lam_rows.items()
            }
        ):
            points = sorted(
                (p["lambda"], sum(result.rows[n][s] for s in result.skills) / len(result.skills))
                for n, p in lam_rows.items()
                if n.split(" ")[0] + (f" d={p['density']}" if "density" in p else "") == method
            )
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=method)
        ax.set_xlabel("lambda")
        ax.set_ylabel("mean accuracy over skills")
        ax.legend(fontsize=8)
        images.append(_png(fig, plt, io, base64))
    names = result.ordered()
    rows = "".join(
        f"<tr><td>{n}</td>"
        + "".join(f"<td>{result.rows[n][s]:.2f}</td>" for s in result.skills)
        + f"<td>{result.normalised(n):.2f}</td></tr>"
        for n in names
    )
    head = "".join(f"<th>{s}</th>" for s in result.skills)
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>mergesmith demo</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style>"
        f"</head><body><h1>mergesmith demo</h1><p>Per-skill exact-match accuracy on held-out test sets; "
        f"normalised = mean over skills of merge / expert accuracy. {result.seconds:.0f} s.</p>"
        f"<h2>Results</h2><table><tr><th>model</th>{head}<th>normalised</th></tr>{rows}</table><h2>Plots</h2>"
        + "".join(f"<p><img src='data:image/png;base64,{img}'></p>" for img in images)
        + "</body></html>"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    return out


def _png(fig: Any, plt: Any, io: Any, base64: Any) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()
