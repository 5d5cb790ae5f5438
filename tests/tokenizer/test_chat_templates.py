"""chat_template: auto, built-in names and literal templates, written where transformers reads
them; a template alone leaves every row as it is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import EMBED, Output, merge_api
from zoo import weights_fixture, zoo_fixture  # noqa: F401  (session fixtures)

from mergesmith.api import plan
from mergesmith.tokenizer.templates import BUILTIN


def _with_template(src: Path, dest: Path, template: str) -> Path:
    shutil.copytree(src, dest)
    (dest / "chat_template.jinja").write_text(template)
    return dest


def _recipe(models: list[Path], setting: str, extra: str = "") -> str:
    entries = "".join(f"  - model: {m}\n    parameters: {{weight: 1.0}}\n" for m in models)
    return f"models:\n{entries}merge_method: linear\nchat_template: {setting}\n{extra}"


def _tokenizer_template(out: Path) -> str:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(out).chat_template


def test_auto_takes_the_template_most_inputs_have(zoo, weights, tmp_path: Path) -> None:
    t1 = "{% for m in messages %}ONE {{ m['content'] }}{% endfor %}"
    t2 = "{% for m in messages %}TWO {{ m['content'] }}{% endfor %}"
    models = [_with_template(zoo["a"], tmp_path / "x", t1), _with_template(zoo["base"], tmp_path / "y", t2),
              _with_template(zoo["base"], tmp_path / "z", t2 + "\n")]  # the same template, stripped
    out = merge_api(tmp_path, _recipe(models, "auto"))
    assert (out / "chat_template.jinja").read_text() == t2
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == t2
    assert _tokenizer_template(out) == t2
    merged = Output(out)  # a template alone changes no row
    torch.testing.assert_close(merged.tensors[EMBED], (weights["a"][EMBED] + 2 * weights["base"][EMBED]) / 3)


def test_builtin_template_renders_with_single_chat_tokens(zoo, tmp_path: Path) -> None:
    out = merge_api(tmp_path, _recipe([zoo["a"], zoo["c"]], "chatml", "tokenizer_source: union\n"))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template == BUILTIN["chatml"][0]
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "w1 c0"}], add_generation_prompt=True,
                                        tokenize=True, return_dict=False)
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == start and ids.count(start) == 2


def test_builtin_template_warns_when_its_tokens_are_not_in_the_tokenizer(zoo) -> None:
    warnings = plan(_recipe([zoo["a"], zoo["base"]], "llama3")).warnings
    assert any("<|start_header_id|>" in w and "splits" in w for w in warnings)


def test_literal_template_is_written_verbatim(zoo, tmp_path: Path) -> None:
    literal = "{% for m in messages %}<<{{ m['role'] }}>> {{ m['content'] }}\n{% endfor %}"
    out = merge_api(tmp_path, _recipe([zoo["a"], zoo["base"]], json.dumps(literal)))
    assert (out / "chat_template.jinja").read_text() == literal == _tokenizer_template(out)
    assert (out / "tokenizer.json").read_bytes() == (zoo["a"] / "tokenizer.json").read_bytes()


def test_example_union_recipe_runs(zoo, tmp_path: Path) -> None:
    """examples/tokenizers/union.yaml, with its model paths pointed at the test models."""
    example = Path(__file__).parents[2] / "examples" / "tokenizers" / "union.yaml"
    text = example.read_text()
    for name, model in (("base", "base"), ("chat-finetune", "c"), ("code-finetune", "b")):
        text = text.replace(f"./models/{name}", str(zoo[model]))
    merged = Output(merge_api(tmp_path, text))
    assert merged.config["vocab_size"] % 64 == 0 and {"<|im_start|>", "<tool>", "c0", "b0"} <= set(merged.vocab)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged.path)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "w1 b0"}], tokenize=True, return_dict=False)
    assert ids[0] == merged.vocab["<|im_start|>"] and max(ids) < merged.config["vocab_size"]


CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " hi "},
        {"role": "assistant", "content": "hello"}]


@pytest.mark.parametrize(("name", "expected"), [
    ("llama3", "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\n"
               "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>\n"
               "<|start_header_id|>assistant<|end_header_id|>\n\nhello<|eot_id|>\n"),
    ("mistral", "<s> [INST] Be brief.\n\n hi  [/INST] hello</s>"),
    ("alpaca", "Be brief.\n\n### Instruction:\nhi\n\n### Response:\nhello"),
    ("exaone", "    [|system|]Be brief.\n        [|endofturn|]\n\n    [|user|] hi \n        \n\n"
               "    [|assistant|]hello\n        [|endofturn|]\n\n"),
])
def test_builtin_templates_render_as_mergekits(name: str, expected: str) -> None:
    """mergekit 0.1.5's renderings of its built-ins, worked from its templates (whitespace and
    all): a mergekit recipe's `chat_template: NAME` gives the same chats here."""
    import jinja2

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders
    text = env.from_string(BUILTIN[name][0]).render(messages=CHAT, add_generation_prompt=False,
                                                   bos_token="<s>", eos_token="</s>")
    assert text == expected
