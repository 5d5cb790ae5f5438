"""Chat templates: `chat_template: auto | chatml | llama3 | mistral | alpaca | exaone | <Jinja text>`.

`auto` takes the template most of the input models have (ties: the first in recipe order).
A value with `{{` or `{%` is a literal template, parsed (never rendered) here so a syntax
error fails the plan instead of the first chat. The built-in templates are written for
mergesmith and render every chat exactly as mergekit 0.1.5's templates of the same name do
(tests/compat compares the renderings), so a mergekit recipe's `chat_template: llama3` means
the same; each lists the strings it relies on being single tokens, so the plan can warn
when the output tokenizer splits them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mergesmith.errors import RecipeError, did_you_mean

_CHATML = (
    "{%- for message in messages -%}\n"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}\n"
)

_LLAMA3 = (
    "{%- for message in messages -%}\n"
    "{%- if loop.first -%}{{- bos_token -}}{%- endif -%}\n"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + (message['content'] | trim)"
    " + '<|eot_id|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}\n"
)

_MISTRAL = (
    "{%- set has_system = messages and messages[0]['role'] == 'system' -%}\n"
    "{%- set turns = messages[1:] if has_system else messages -%}\n"
    "{{- bos_token -}}\n"
    "{%- for message in turns -%}\n"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{- raise_exception('after an optional system message, roles must alternate user/assistant') -}}"
    "{%- endif -%}\n"
    "{%- if message['role'] == 'user' -%}\n"
    "{{- ' [INST] ' + (messages[0]['content'] + '\\n\\n' if has_system and loop.first else '')"
    " + message['content'] + ' [/INST]' -}}\n"
    "{%- elif message['role'] == 'assistant' -%}{{- ' ' + message['content'] + eos_token -}}\n"
    "{%- else -%}{{- raise_exception('only user and assistant roles, after an optional system message') -}}\n"
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
)

_ALPACA = (
    "{%- set systems = messages | selectattr('role', 'equalto', 'system') | list -%}\n"
    "{{- ((systems | last).content | trim if systems else '') + '\\n\\n' -}}\n"
    "{%- for message in messages -%}\n"
    "{%- set head = {'user': '### Instruction:\\n', 'assistant': '### Response:\\n',"
    " 'user_context': '### Input:\\n'}.get(message['role']) -%}\n"
    "{%- if head -%}{{- head + (message['content'] | trim) + ('' if loop.last else '\\n\\n') -}}{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt and messages[-1]['role'] != 'assistant' -%}{{- '### Response:\\n' -}}{%- endif -%}\n"
)

# EXAONE's turns as mergekit renders them, indentation included.
_EXAONE = (
    "{%- for message in messages -%}\n"
    "{%- if loop.first and message['role'] != 'system' -%}{{- '        [|system|][|endofturn|]\\n\\n' -}}{%- endif -%}\n"
    "{{- '    [|' + message['role'] + '|]' + message['content'] + '\\n' -}}\n"
    "{{- '        \\n\\n' if message['role'] == 'user' else '        [|endofturn|]\\n\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}{{- '    [|assistant|]\\n' -}}{%- endif -%}\n"
)

# name -> (template, strings it expects to be single tokens of the tokenizer)
BUILTIN: dict[str, tuple[str, tuple[str, ...]]] = {
    "chatml": (_CHATML, ("<|im_start|>", "<|im_end|>")),
    "llama3": (_LLAMA3, ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
    "mistral": (_MISTRAL, ()),
    "alpaca": (_ALPACA, ()),
    "exaone": (_EXAONE, ("[|endofturn|]",)),
}


@dataclass(frozen=True)
class ChatTemplate:
    text: str
    tokens: tuple[str, ...] = ()  # strings that should be single tokens (built-ins only)
    origin: str = "literal"  # "auto (from <model>)", a built-in name, or "literal"


def model_template(path: Path | None) -> str | None:
    """A model's chat template, where transformers 5 looks: chat_template.jinja first, then
    tokenizer_config.json (a string, or a list of named templates: the "default" one)."""
    if path is None:
        return None
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text(encoding="utf-8")
    config = path / "tokenizer_config.json"
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("chat_template") if config.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    if isinstance(value, list):
        value = next((t.get("template") for t in value if isinstance(t, dict) and t.get("name") == "default"), None)
    return value if isinstance(value, str) else None


def resolve_chat_template(value: str | None, paths: dict[str, Path | None]) -> tuple[ChatTemplate | None, list[str]]:
    """The template to write (None: keep the source's) and warnings."""
    if value is None:
        return None, []
    if value.strip() == "auto":
        found = {ref: model_template(p) for ref, p in paths.items()}
        texts = [t.strip() for t in found.values() if t and t.strip()]
        if not texts:
            return None, ["chat_template: auto: no input model has a chat template, so none is "
                          "written; name one (chatml, llama3, mistral, alpaca) or give a template"]
        text = Counter(texts).most_common(1)[0][0]
        donor = next(ref for ref, t in found.items() if t and t.strip() == text)
        return ChatTemplate(text, origin=f"auto (from {donor})"), []
    if value in BUILTIN:
        text, tokens = BUILTIN[value]
        return ChatTemplate(text, tokens, value), []
    if "{{" in value or "{%" in value:
        _check_syntax(value)
        return ChatTemplate(value), []
    raise RecipeError(
        f"chat_template: {value!r} is neither 'auto', a built-in template "
        f"({', '.join(BUILTIN)}) nor a Jinja template{did_you_mean(value, [*BUILTIN, 'auto'])}",
        hint="use a built-in name, 'auto' (the template most input models have), or the template "
             "text itself (it contains {{ or {%)")


def _check_syntax(text: str) -> None:
    import jinja2

    try:
        jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise RecipeError(f"chat_template: the Jinja template does not parse: {exc.message} "
                          f"(template line {exc.lineno})",
                          hint="fix the template, or use a built-in name such as chatml") from None
