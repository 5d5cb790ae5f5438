"""Every registered method has a documentation page and an example recipe that agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mergesmith.methods import REGISTRY, get_method

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_method_page_documents_every_parameter(name: str) -> None:
    page = (ROOT / "docs" / "methods" / f"{name}.md").read_text()
    assert page.startswith(f"# {name}\n")
    for section in ("## Formula", "## Parameters", "## When to use it", "## Example"):
        assert section in page, section
    table = page.split("## Parameters", 1)[1].split("\n## ", 1)[0]
    for info in get_method(name).param_infos:
        assert f"| `{info.name}` |" in table, info.name
    if get_method(name).paper:
        assert get_method(name).paper in page


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_example_recipe_is_the_pages_example(name: str) -> None:
    page = (ROOT / "docs" / "methods" / f"{name}.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", page.split("## Example", 1)[1], re.S)
    assert block is not None
    example = (ROOT / "examples" / f"{name}.yaml").read_text()
    assert example.split("\n", 1)[1] == block.group(1)
    assert f"merge_method: {name}\n" in example
    assert all(ref in ("./models/base", "./models/a", "./models/b")
               for ref in re.findall(r"model: (\S+)", example))
