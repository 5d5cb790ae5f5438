"""YAML documents with the source line of every key, for error messages that point at lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mergesmith.errors import RecipeError

Loc = tuple[str | int, ...]


@dataclass
class YamlDoc:
    """One YAML document: its data and the 1-based line of each key path."""

    data: Any
    source: str  # file name or "<string>"
    lines: dict[Loc, int] = field(default_factory=dict)

    def where(self, loc: Loc) -> str:
        """'file:line' for the deepest known prefix of `loc`."""
        for cut in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:cut]))
            if line is not None:
                return f"{self.source}:{line}"
        return self.source


def _collect_lines(node: yaml.Node, loc: Loc, out: dict[Loc, int]) -> None:
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            child = (*loc, key)
            out[child] = key_node.start_mark.line + 1
            _collect_lines(value_node, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _collect_lines(item, (*loc, i), out)


def _check_duplicate_keys(node: yaml.Node, source: str) -> None:
    """PyYAML silently keeps the last of two equal keys; a recipe with one is a mistake."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                raise RecipeError(
                    f'{source}:{line}: key "{key_node.value}" appears twice '
                    f"(first on line {seen[key_node.value]})",
                    hint="keep one of the two entries",
                )
            seen[key_node.value] = line
            _check_duplicate_keys(value_node, source)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, source)


def load_yaml_docs(text: str, source: str = "<string>", what: str = "recipe") -> list[YamlDoc]:
    """Parse every document of a YAML stream, keeping key locations."""
    try:
        nodes = [n for n in yaml.compose_all(text, Loader=yaml.SafeLoader) if n is not None]
        datas = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(
            f"{where}: not valid YAML: {problem}",
            hint="check indentation and that lists use '- ' and mappings 'key: value'",
        ) from None
    docs = []
    for node, data in zip(nodes, datas):
        _check_duplicate_keys(node, source)
        lines: dict[Loc, int] = {}
        _collect_lines(node, (), lines)
        docs.append(YamlDoc(data=data, source=source, lines=lines))
    if not docs:
        raise RecipeError(f"{source}: the {what} is empty", hint=f"see examples/ for {what}s")
    return docs


def load_yaml_file(path: Path, what: str = "recipe") -> list[YamlDoc]:
    """Every document of a YAML file (`what` names the kind of file in errors)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{what} file {path} does not exist", hint="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read {what} file {path}: {exc}") from None
    return load_yaml_docs(text, source=str(path), what=what)
