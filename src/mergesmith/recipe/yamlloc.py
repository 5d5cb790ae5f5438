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


# A recipe or config has hundreds of nodes; aliases (&a ... *a) that expand to more are a
# "billion laughs" bomb, which every walk over the data (ours, pydantic's) would take forever on.
MAX_NODES = 100_000


def _check_expansion(node: yaml.Node, source: str, what: str) -> None:
    """Refuse a document whose aliases expand past MAX_NODES, or refer to themselves."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise RecipeError(f"{source}:{n.start_mark.line + 1}: a YAML alias refers to a node that contains "
                              "it (an endless structure)", hint=f"write the {what} out without anchors (&) and aliases (*)")
        open_nodes.add(key)
        children = ([c for pair in n.value for c in pair] if isinstance(n, yaml.MappingNode)
                    else n.value if isinstance(n, yaml.SequenceNode) else [])
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                raise RecipeError(f"{source}: its YAML aliases (&anchor ... *alias) expand to more than "
                                  f"{MAX_NODES:,} values, far more than any {what} has",
                                  hint=f"write the {what} out without anchors (&) and aliases (*)")
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(node)


def load_yaml_docs(text: str, source: str = "<string>", what: str = "recipe") -> list[YamlDoc]:
    """Parse every document of a YAML stream, keeping key locations."""
    try:
        nodes = [n for n in yaml.compose_all(text, Loader=yaml.SafeLoader) if n is not None]
        for node in nodes:
            _check_expansion(node, source, what)
        datas = [d for d in yaml.safe_load_all(text) if d is not None]
    except RecursionError:
        raise RecipeError(f"{source}: the YAML is nested too deeply", hint=f"a {what} is a few levels deep; "
                          "check the brackets") from None
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
    return load_yaml_docs(read_yaml_text(path, what), source=str(path), what=what)


def read_yaml_text(path: Path, what: str = "recipe") -> str:
    """The text of a YAML file, refusing at once what is no YAML: a folder, a FIFO (it would
    block), a safetensors file, bytes that are not UTF-8."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise RecipeError(f"{what} file {path} does not exist", hint="check the path") from None
    except OSError as exc:
        raise RecipeError(f"cannot read {what} file {path}: {exc.strerror or exc}", hint="check the path") from None
    if stat.S_ISDIR(mode):
        raise RecipeError(f"{what} file {path} is a directory", hint=f"give the {what} YAML file itself, "
                          "e.g. recipe.yaml (models are folders named inside it)")
    if not stat.S_ISREG(mode):
        raise RecipeError(f"{what} file {path} is not a regular file (a FIFO or device)",
                          hint=f"save the {what} to a file and give its path")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"cannot read {what} file {path}: {exc.strerror or exc}",
                          hint="check the file's permissions") from None
    if path.suffix in (".safetensors", ".bin", ".pt", ".gguf") or data[8:9] == b"{" and b'"dtype"' in data[:4096]:
        raise RecipeError(f"{what} file {path} is a weights file, not a YAML {what}",
                          hint=f"give the {what} YAML; it names model folders, which hold the weights")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{what} file {path} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})",
                          hint="save the file as UTF-8") from None
