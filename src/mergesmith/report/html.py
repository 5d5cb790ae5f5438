"""report.html: one self-contained page (inline CSS, plots as data: URIs, the numbers as JSON).

Sections (ids are stable, tests and docs refer to them): summary, recipe, manifest,
delta-norms, cosine, sign-conflicts, kept-energy, contributions, distances, evaluation,
outliers, layers, skipped. Sections without data are left out.
"""

from __future__ import annotations

import html
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mergesmith.report.sections as sections
from mergesmith.errors import CheckpointError, OptionsError, OutputError
from mergesmith.report.inspect import FORMAT as INSPECT_FORMAT
from mergesmith.report.inspect import JSON_NAME
from mergesmith.report.merged import MANIFEST, RECIPE, load_manifest, merged_document

REPORT_NAME = "report.html"
@dataclass
class Subject:
    """What a report is about: the statistics document and its surroundings."""

    data: dict[str, Any]
    title: str
    recipe: str | None = None
    manifest: dict[str, Any] | None = None
    dirs: dict[str, Any] = field(default_factory=dict)  # label -> model directory (eval.json)


def _load_inspect(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({exc})",
                              hint="write it again with `mergesmith inspect --json`") from None
    if not isinstance(data, dict) or data.get("format") != INSPECT_FORMAT:
        raise CheckpointError(f"{path}: not a mergesmith inspect document (format {INSPECT_FORMAT!r})",
                              hint="write it with `mergesmith inspect --json OUT`")
    return data


def load_subject(target: Path) -> Subject:
    """A merged directory, an inspect output directory, or an inspect JSON file."""
    if target.is_file() and target.suffix == ".json":
        data = _load_inspect(target)
    elif (target / MANIFEST).is_file():
        data = merged_document(target)
        recipe = (target / RECIPE).read_text(encoding="utf-8") if (target / RECIPE).is_file() else None
        dirs = {"merged": target, **_input_dirs(data)}
        return Subject(data, target.resolve().name, recipe, load_manifest(target), dirs)
    elif (target / JSON_NAME).is_file():
        data = _load_inspect(target / JSON_NAME)
    else:
        what = "does not exist" if not target.exists() else f"has neither {MANIFEST} nor {JSON_NAME}"
        raise OptionsError(f"{target}: {what}",
                           hint="give a directory written by `mergesmith merge`, or by "
                                "`mergesmith inspect --json DIR`, or an inspect .json file")
    return Subject(data, target.resolve().name if target.is_dir() else target.stem, dirs=_input_dirs(data))


def _input_dirs(data: dict[str, Any]) -> dict[str, Any]:
    dirs = {m["label"]: m.get("path") for m in data["models"]}
    if data.get("base"):
        dirs[f"{data['base']['label']} (base)"] = data["base"].get("path")
    return dirs


def write_report(target: Path, out: Path | None = None) -> Path:
    """Write the report page for `target`; return its path (default: target/report.html)."""
    subject = load_subject(Path(target))
    if out is None:
        out = (target if target.is_dir() else target.parent) / REPORT_NAME
    page = render(subject)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)  # readers never see half a page
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{out}: cannot write the report: {exc.strerror or exc}",
                          hint="choose a writable --out location") from None
    return out


def render(subject: Subject) -> str:
    """The whole page."""
    from mergesmith.version import __version__

    data = subject.data
    parts = [("summary", "Summary", sections.summary(data)),
             ("recipe", "Recipe", sections.recipe(subject.recipe)),
             ("manifest", "Manifest", sections.manifest(subject.manifest)),
             *sections.plot_sections(data),
             ("evaluation", "Evaluation", sections.evaluation(subject.dirs)),
             ("outliers", "Outliers", sections.outliers(data)),
             ("layers", "Per-layer figures", sections.layers(data)),
             ("skipped", "Tensors left out", sections.skipped(data))]
    present = [(sid, title, body) for sid, title, body in parts if body]
    nav = "".join(f'<a href="#{sid}">{html.escape(title)}</a>' for sid, title, _ in present)
    body = "\n".join(sections.section(sid, title, text) for sid, title, text in present)
    kind = "merge report" if subject.manifest is not None else "inspect report"
    title = html.escape(f"mergesmith {kind}: {subject.title}")
    blob = json.dumps(data, indent=None).replace("</", "<\\/")  # cannot close the script element
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{sections.CSS}</style></head><body>\n<h1>{title}</h1>\n"
            f"<p>written by mergesmith {__version__} on {stamp}; the numbers are in the JSON at the end "
            f"of this file (script#mergesmith-data).</p>\n<nav>{nav}</nav>\n{body}\n"
            f'<script type="application/json" id="mergesmith-data">{blob}</script>\n</body></html>\n')
