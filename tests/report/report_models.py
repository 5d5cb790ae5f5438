"""Tiny merged models for the report tests: a real merge of the session's Llama family."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from factory import write_recipe

from mergesmith.api import merge

LAMBDA, WEIGHTS = 0.8, (1.0, 0.5)


def make_merged(root: Path, family: dict[str, Path], method: str = "task_arithmetic") -> Path:
    density = ", density: 0.5" if method != "task_arithmetic" else ""
    recipe = write_recipe(root, f"""
models:
  - model: {family['a']}
    parameters: {{weight: {WEIGHTS[0]}{density}}}
  - model: {family['b']}
    parameters: {{weight: {WEIGHTS[1]}{density}}}
merge_method: {method}
base_model: {family['base']}
parameters: {{lambda: {LAMBDA}}}
""", name=f"{method}.yaml")
    out = root / method
    merge(recipe, out)
    return out


class PageParser(HTMLParser):
    """Section ids, image sources and the embedded data of a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.data = ""
        self._in_data = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id") or "")
        elif tag == "img":
            self.images.append(a.get("src") or "")
        elif tag == "script" and a.get("id") == "mergesmith-data":
            self._in_data = True

    def handle_endtag(self, tag: str) -> None:
        self._in_data = self._in_data and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data += data


def parse_page(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    return parser
