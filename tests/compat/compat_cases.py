"""The comparison recipes: written as a user would for mergekit 0.1.5, on the inputs of compat_inputs.py.

`@llama/a` stands for the path of an input model (compat_inputs.build_inputs); `@@name` in a
multi-document recipe for an earlier document's output, by name. The kinds follow mergekit's
own test suite (tests/test_basic_merges.py: every model gets `weight: 0.6/0.4` whatever the
method, dtype bfloat16; nuslerp's row-wise/flatten variants; VLM merges; passthrough stacks and
scales; tests/test_tokenizer.py and test_chat_template.py: tokenizer sources and templates) and
its examples/ (linear.yml, ties.yml, bio-merge.yml, gradient-slerp.yml, arcee_fusion.yml,
orcamini-platy-44layer.yml, mega.yml's named multi-document recipe).

check:
  "exact"   float32: every tensor within 1e-6 of mergekit's, relative to the tensor's max |value|
  "half"    bfloat16/float16: a few rounding units of the operands; for top-k methods also
            whole deltas, but only at entries where a selection ties exactly at its threshold
  "random"  DARE/DELLA: a seeded summary (kept share, kept magnitudes), compared in distribution
needs: a known difference from mergekit, why the case fails today (the test is
       xfail(strict=True) until it is resolved).
topk:  for "half" cases of magnitude selections: the per-model density, gamma (breadcrumbs) and
       weight, and "sign" for TIES' sign election (a sum within rounding of zero may fall
       either way in mergekit's half-precision arithmetic); kind "variance" for sce's selection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    id: str
    recipe: str
    check: str = "exact"
    needs: str | None = None
    topk: dict | None = None  # {"density": [...], "gamma": [...] or None, "base": "@...", "models": [...]}
    multi: bool = False  # several named documents (mergekit-multi); the last is the output
    tokenizer: bool = False  # compare the vocabulary, rows by token, and the chat template
    # the dtype mergekit writes where it is not the recipe's (a documented difference: its
    # arcee_fusion and ramplus_tl promote a bfloat16 recipe's result to float32; mergesmith
    # writes the recipe's dtype); values are compared in the recipe's dtype
    their_dtype: str | None = None

    def text(self, root: Path) -> str:
        return resolve(self.recipe, root)


_REFERENCE = re.compile(r"(?<!@)@([A-Za-z0-9_]+/[A-Za-z0-9_]+)")


def resolve(text: str, root: Path) -> str:
    """Input references to paths under root; `@@name` (an earlier document's output) to `name`."""
    return _REFERENCE.sub(lambda m: str(root / m[1]), text).replace("@@", "")


def references(text: str) -> list[str]:
    """The input models a recipe names ("llama/a", ...), sorted."""
    return sorted(set(_REFERENCE.findall(text)))


def _models(*entries: tuple[str, str | None]) -> str:
    lines = ["models:"]
    for model, params in entries:
        lines.append(f"  - model: {model}")
        if params:
            lines.append(f"    parameters: {params}")
    return "\n".join(lines) + "\n"


def mk_two(method: str, a: str, b: str, *, base: str | None = None, params: str | None = None,
           dtype: str = "bfloat16", weights: tuple[float, float] = (0.6, 0.4)) -> str:
    """mergekit's test-suite recipe: two models with weights 0.6 / 0.4, whatever the method."""
    text = _models((a, f"{{weight: {weights[0]}}}"), (b, f"{{weight: {weights[1]}}}"))
    text += f"merge_method: {method}\n"
    if base:
        text += f"base_model: {base}\n"
    if params:
        text += f"parameters: {params}\n"
    return text + f"dtype: {dtype}\n"


def _plain(method: str, models: list[tuple[str, str | None]], *, base: str | None = None,
           params: str | None = None, dtype: str = "float32") -> str:
    text = _models(*models) + f"merge_method: {method}\n"
    if base:
        text += f"base_model: {base}\n"
    if params:
        text += f"parameters: {params}\n"
    return text + f"dtype: {dtype}\n"


A, B, C, BASE = "@llama/a", "@llama/b", "@llama/c", "@llama/base"
W3 = [(A, "{weight: 0.5}"), (B, "{weight: 0.3}"), (C, "{weight: 0.7}")]
WD3 = [(A, "{weight: 0.5, density: 0.5}"), (B, "{weight: 0.3, density: 0.3}"), (C, "{weight: 0.7, density: 0.9}")]
NO_W3 = [(A, None), (B, None), (C, None)]
SEEDED = "{weight: 1.0, density: 0.4}"

# float32, every method, parameters as each method documents them
FP32 = [
    Case("linear", _plain("linear", W3)),
    Case("linear_no_normalize", _plain("linear", W3, params="{normalize: false}")),
    Case("linear_filters", _plain("linear", [(A, "{weight: [{filter: self_attn, value: 0.2}, {filter: mlp, value: 0.7},"
                                                " {value: 0.5}]}"), (B, "{weight: 0.5}")])),
    Case("slerp", _plain("slerp", [(BASE, None), (A, None)], base=BASE, params="{t: 0.3}")),
    Case("nuslerp", _plain("nuslerp", [(A, "{weight: 0.3}"), (B, "{weight: 0.7}")])),
    Case("nuslerp_base_row_wise", _plain("nuslerp", [(A, "{weight: 0.3}"), (B, "{weight: 0.7}")], base=BASE,
                                         params="{nuslerp_row_wise: true, nuslerp_flatten: false}")),
    Case("multislerp", _plain("multislerp", W3, base=BASE)),
    Case("multislerp_no_base", _plain("multislerp", W3)),
    Case("task_arithmetic", _plain("task_arithmetic", W3, base=BASE, params="{lambda: 0.8, normalize: true}")),
    Case("ties", _plain("ties", WD3, base=BASE, params="{normalize: true}")),
    Case("ties_negative_weight", _plain("ties", [(A, "{weight: 0.5, density: 0.5}"), (B, "{weight: -0.3, density: 0.6}")],
                                        base=BASE, params="{normalize: false, int8_mask: true}")),
    Case("breadcrumbs", _plain("breadcrumbs", WD3, base=BASE, params="{gamma: 0.05}")),
    Case("breadcrumbs_ties", _plain("breadcrumbs_ties", WD3, base=BASE, params="{gamma: 0.02, lambda: 1.2}")),
    Case("sce", _plain("sce", NO_W3, base=BASE, params="{select_topk: 0.4}")),
    Case("model_stock", _plain("model_stock", [(A, None), (B, None)], base=BASE)),
    Case("model_stock_filter_wise", _plain("model_stock", NO_W3, base=BASE, params="{filter_wise: true}")),
    Case("karcher", _plain("karcher", NO_W3, params="{max_iter: 20, tol: 1e-6}")),
    Case("nearswap", _plain("nearswap", [(BASE, None), (A, None)], base=BASE, params="{t: 0.01}")),
    Case("arcee_fusion", _plain("arcee_fusion", [(BASE, None), (A, None)], base=BASE)),
    Case("ram", _plain("ram", [(A, None), (B, None)], base=BASE, params="{epsilon: 0.01}")),
    Case("ramplus_tl", _plain("ramplus_tl", [(A, None), (B, None)], base=BASE,
                              params="{epsilon: 0.01, r: 0.3, alpha: 0.5}")),
    Case("passthrough_scale", _plain("passthrough", [(A, "{scale: [{filter: o_proj, value: 0}, {value: 1}]}")])),
    Case("dare_linear", _plain("dare_linear", [(A, SEEDED)], base=BASE), check="random"),
    Case("dare_ties", _plain("dare_ties", [(A, SEEDED)], base=BASE), check="random"),
    Case("della", _plain("della", [(A, "{weight: 1.0, density: 0.5, epsilon: 0.2}")], base=BASE), check="random"),
    Case("della_linear", _plain("della_linear", [(A, "{weight: 1.0, density: 0.5, epsilon: 0.2}")], base=BASE,
                                params="{rescale: false}"), check="random"),
]

# mergekit's own test suite, as written there: bfloat16, weight 0.6 / 0.4 for every method
MK = "mk_"
MK_SUITE = [
    Case(MK + "linear", mk_two("linear", A, B), check="half"),
    Case(MK + "slerp", mk_two("slerp", A, B, base=A, params="{t: 0.35}"), check="half"),
    Case(MK + "nuslerp_flatten", mk_two("nuslerp", A, B), check="half"),
    Case(MK + "nuslerp_base_row_wise", mk_two("nuslerp", A, B, base=C,
                                              params="{nuslerp_row_wise: true, nuslerp_flatten: false}"), check="half"),
    Case(MK + "nuslerp_opposite_weights", mk_two("nuslerp", A, B, base=C, weights=(-0.5, 0.5),
                                                 params="{nuslerp_row_wise: false, nuslerp_flatten: false}"),
         check="half"),
    Case(MK + "task_arithmetic", mk_two("task_arithmetic", A, B, base=C), check="half"),
    Case(MK + "breadcrumbs", mk_two("breadcrumbs", A, B, base=C), check="half",
         topk={"density": [0.9, 0.9], "gamma": [0.01, 0.01], "base": C, "models": [A, B], "weight": [0.6, 0.4]}),
    Case(MK + "ties", mk_two("ties", A, B, base=C, params="{density: 0.3}"), check="half",
         topk={"density": [0.3, 0.3], "gamma": None, "base": C, "models": [A, B], "weight": [0.6, 0.4],
               "sign": True}),
    Case(MK + "sce", mk_two("sce", A, B, base=C, params="{select_topk: 0.5}"), check="half",
         topk={"kind": "variance", "density": [0.5], "base": C, "models": [A, B]}),
    Case(MK + "ram", mk_two("ram", A, B, base=C), check="half"),
    Case(MK + "ramplus_tl", mk_two("ramplus_tl", A, B, base=C, params="{r: 0.05, alpha: 1.0}"), check="half",
         their_dtype="float32"),
    Case(MK + "multislerp", mk_two("multislerp", A, B, base=C), check="half"),
    Case(MK + "model_stock", mk_two("model_stock", B, C, base=A), check="half"),
    Case(MK + "arcee_fusion", mk_two("arcee_fusion", A, B, base=A), check="half", their_dtype="float32",
         topk={"kind": "importance", "base": A, "models": [B]}),
    Case(MK + "nearswap", mk_two("nearswap", A, B, base=A, params="{t: 0.0001}"), check="half"),
    Case(MK + "karcher", mk_two("karcher", A, B, base=C, params="{max_iter: 5, tol: 1e-5}"), check="half"),
    Case(MK + "della", mk_two("della", A, B, base=C, params="{density: 0.66, epsilon: 0.05, lambda: 0.5}"),
         check="random"),
    Case(MK + "dare_ties", mk_two("dare_ties", A, B, base=C, params="{density: 0.66}"), check="random"),
    Case(MK + "gpt2_stack", "slices:\n  - sources: [{model: @gpt2/a, layer_range: [0, 2]}]\n"
         "  - sources: [{model: @gpt2/a, layer_range: [0, 2]}]\nmerge_method: passthrough\ndtype: bfloat16\n",
         check="half"),
    Case(MK + "vlm_linear", mk_two("linear", "@qwen2vl/a", "@qwen2vl/b"), check="half"),
    Case(MK + "vlm_task_arithmetic", mk_two("task_arithmetic", "@qwen2vl/a", "@qwen2vl/b", base="@qwen2vl/base"),
         check="half"),
]

L16A, L16B, L16BASE = "@llama16/a", "@llama16/b", "@llama16/base"
# bfloat16 inputs merged in bfloat16 (top-k selections can tie exactly at the threshold)
HALF = [
    Case("bf16_linear", _plain("linear", [(L16A, "{weight: 0.7}"), (L16B, "{weight: 0.3}")], dtype="bfloat16"),
         check="half"),
    Case("bf16_task_arithmetic", _plain("task_arithmetic", [(L16A, "{weight: 0.7}"), (L16B, "{weight: 0.5}")],
                                        base=L16BASE, dtype="bfloat16"), check="half"),
    Case("bf16_ties", _plain("ties", [(L16A, "{weight: 1.0, density: 0.5}"), (L16B, "{weight: 0.8, density: 0.3}")],
                             base=L16BASE, dtype="bfloat16"), check="half",
         topk={"density": [0.5, 0.3], "gamma": None, "base": L16BASE, "models": [L16A, L16B], "weight": [1.0, 0.8],
               "sign": True}),
    Case("bf16_ties_one_model", _plain("ties", [(L16A, "{weight: 1.0, density: 0.4}")], base=L16BASE,
                                       dtype="bfloat16"), check="half",
         topk={"density": [0.4], "gamma": None, "base": L16BASE, "models": [L16A], "weight": [1.0], "sign": True}),
    Case("bf16_breadcrumbs", _plain("breadcrumbs", [(L16A, "{weight: 1.0, density: 0.5, gamma: 0.05}"),
                                                    (L16B, "{weight: 0.5, density: 0.6, gamma: 0.02}")],
                                    base=L16BASE, dtype="bfloat16"), check="half",
         topk={"density": [0.5, 0.6], "gamma": [0.05, 0.02], "base": L16BASE, "models": [L16A, L16B],
               "weight": [1.0, 0.5]}),
    Case("bf16_sce", _plain("sce", [(L16A, None), (L16B, None)], base=L16BASE, params="{select_topk: 0.5}",
                            dtype="bfloat16"), check="half",
         topk={"kind": "variance", "density": [0.5], "base": L16BASE, "models": [L16A, L16B]}),
    Case("bf16_arcee_fusion", _plain("arcee_fusion", [(L16BASE, None), (L16A, None)], base=L16BASE, dtype="bfloat16"),
         check="half", their_dtype="float32", topk={"kind": "importance", "base": L16BASE, "models": [L16A]}),
    Case("bf16_ramplus_tl", _plain("ramplus_tl", [(L16A, None), (L16B, None)], base=L16BASE,
                                   params="{r: 0.05, alpha: 1.0}", dtype="bfloat16"),
         check="half", their_dtype="float32"),
    Case("bf16_slerp", _plain("slerp", [(L16BASE, None), (L16A, None)], base=L16BASE, params="{t: 0.4}",
                              dtype="bfloat16"), check="half"),
    # mergekit's examples/ties.yml: float16, the base among the models, normalize, int8_mask
    Case("example_ties_fp16", _plain("ties", [(BASE, None), (A, "{density: 0.7, weight: 1.0}"),
                                              (B, "{density: 0.5, weight: 0.6}"), (C, "{density: 0.33, weight: 0.4}")],
                                     base=BASE, params="{normalize: true, int8_mask: true}", dtype="float16"),
         check="half", topk={"density": [0.7, 0.5, 0.33], "gamma": None, "base": BASE, "models": [A, B, C],
                             "weight": [1.0, 0.6, 0.4], "sign": True}),
    # examples/bio-merge.yml: TIES of two fine-tunes in float16, normalize off, int8_mask
    Case("example_bio_merge", _plain("ties", [("@mistral/a", "{density: 0.5, weight: 0.5}"),
                                              ("@mistral/b", "{density: 0.5, weight: 0.5}")], base="@mistral/base",
                                     params="{normalize: false, int8_mask: true}", dtype="float16"),
         check="half", topk={"density": [0.5, 0.5], "gamma": None, "base": "@mistral/base",
                             "models": ["@mistral/a", "@mistral/b"], "weight": [0.5, 0.5], "sign": True}),
    # examples/linear.yml: three models in float16
    Case("example_linear", _plain("linear", [(A, "{weight: 1.0}"), (B, "{weight: 0.3}"), (C, "{weight: 0.5}")],
                                  dtype="float16"), check="half"),
    # examples/arcee_fusion.yml: the base among the models, bfloat16
    Case("example_arcee_fusion", _plain("arcee_fusion", [(A, None), (B, None)], base=A, dtype="bfloat16"),
         check="half", their_dtype="float32", topk={"kind": "importance", "base": A, "models": [B]}),
    # the former tests/cli/test_merge_e2e.py comparison: passthrough stacking in float16
    Case("passthrough_fp16", "slices:\n  - sources: [{model: @llama/a, layer_range: [0, 2]}]\n"
         "  - sources: [{model: @llama/b, layer_range: [1, 3]}]\nmerge_method: passthrough\ndtype: float16\n",
         check="half"),
]

# architectures, slices and gradients, LoRA
STRUCTURE = [
    Case("mistral_ties", _plain("ties", [("@mistral/a", "{weight: 0.6, density: 0.5}"),
                                         ("@mistral/b", "{weight: 0.4, density: 0.5}")], base="@mistral/base")),
    Case("qwen2_task_arithmetic", _plain("task_arithmetic", [("@qwen2/a", "{weight: 0.6}"),
                                                             ("@qwen2/b", "{weight: 0.4}")], base="@qwen2/base")),
    Case("gemma_task_arithmetic", _plain("task_arithmetic", [("@gemma/a", "{weight: 0.6}"), ("@gemma/b", "{weight: 0.4}")],
                                         base="@gemma/base")),
    Case("phi3_ties", _plain("ties", [("@phi3/a", "{weight: 0.6, density: 0.5}"),
                                      ("@phi3/b", "{weight: 0.4, density: 0.5}")], base="@phi3/base")),
    Case("gpt2_linear", _plain("linear", [("@gpt2/a", "{weight: 0.6}"), ("@gpt2/b", "{weight: 0.4}")])),
    Case("gpt2_slerp", _plain("slerp", [("@gpt2/base", None), ("@gpt2/a", None)], base="@gpt2/base",
                              params="{t: [0, 0.5, 1]}")),
    Case("vlm_slerp", _plain("slerp", [("@qwen2vl/base", None), ("@qwen2vl/a", None)], base="@qwen2vl/base",
                             params="{t: 0.35}")),
    Case("vlm_ties", _plain("ties", [("@qwen2vl/a", "{weight: 0.6, density: 0.5}"),
                                     ("@qwen2vl/b", "{weight: 0.4, density: 0.5}")], base="@qwen2vl/base")),
    # examples/gradient-slerp.yml
    Case("gradient_slerp", "slices:\n  - sources:\n      - {model: @llama/base, layer_range: [0, 3]}\n"
         "      - {model: @llama/a, layer_range: [0, 3]}\nmerge_method: slerp\nbase_model: @llama/base\n"
         "parameters:\n  t:\n    - filter: self_attn\n      value: [0, 0.5, 0.3, 0.7, 1]\n"
         "    - filter: mlp\n      value: [1, 0.5, 0.7, 0.3, 0]\n    - value: 0.5\ndtype: float32\n"),
    # the former e2e comparison: SLERP gradients in bfloat16
    Case("gradient_slerp_bf16", "slices:\n  - sources:\n      - {model: @llama/base, layer_range: [0, 3]}\n"
         "      - {model: @llama/a, layer_range: [0, 3]}\nmerge_method: slerp\nbase_model: @llama/base\n"
         "parameters:\n  t:\n    - filter: self_attn\n      value: [0, 0.5, 0.3, 0.7, 1]\n    - value: 0.5\n"
         "dtype: bfloat16\n", check="half"),
    Case("gradient_task_arithmetic", _plain("task_arithmetic", [(A, "{weight: [0.2, 0.8]}"), (B, "{weight: 0.5}")],
                                            base=BASE, params="{lambda: 0.9, normalize: true}")),
    # examples/orcamini-platy-44layer.yml: a frankenmerge of overlapping layer ranges
    Case("frankenmerge", "slices:\n  - sources: [{model: @llama/a, layer_range: [0, 2]}]\n"
         "  - sources: [{model: @llama/b, layer_range: [1, 3]}]\n  - sources: [{model: @llama/c, layer_range: [2, 3]}]\n"
         "merge_method: passthrough\ndtype: float32\n"),
    Case("slices_linear", "slices:\n  - sources:\n      - {model: @llama/a, layer_range: [0, 2]}\n"
         "      - {model: @llama/b, layer_range: [1, 3]}\n    parameters: {weight: 0.5}\n"
         "  - sources:\n      - {model: @llama/a, layer_range: [2, 3]}\n      - {model: @llama/c, layer_range: [2, 3]}\n"
         "    parameters:\n      weight: [{filter: mlp, value: 0.9}, {value: 0.2}]\n"
         "merge_method: linear\ndtype: float32\n"),
    Case("lora_reference", _plain("linear", [("@llama/base+@lora/a", "{weight: 0.5}"), (B, "{weight: 0.5}")])),
    Case("lora_task_arithmetic", _plain("task_arithmetic", [("@llama/base+@lora/a", "{weight: 1.0}")], base=BASE)),
    Case("modules_vlm", "modules:\n  text_decoder:\n    slices:\n      - sources:\n"
         "          - {model: @qwen2vl/a, layer_range: [0, 3]}\n          - {model: @qwen2vl/b, layer_range: [0, 3]}\n"
         "    parameters: {weight: [0.2, 0.8]}\n  multi_modal_projector:\n"
         "    models: [{model: @qwen2vl/a, parameters: {weight: 0.9}}, {model: @qwen2vl/b, parameters: {weight: 0.1}}]\n"
         "  vision_tower:\n    models: [{model: @qwen2vl/a}, {model: @qwen2vl/b}]\n    parameters: {weight: 0.5}\n"
         "merge_method: linear\ndtype: float32\n"),
    # mega.yml's kind with the final document unnamed (mergekit-multi --out-path)
    Case("multi_final_unnamed", "name: first\n" + _plain("linear", [(A, "{weight: 0.5}"), (B, "{weight: 0.5}")])
         + "---\n" + _plain("ties", [("@@first", "{weight: 0.8, density: 0.6}"), (C, "{weight: 0.3, density: 0.6}")],
                              base=BASE), multi=True),
    Case("multi_named", "name: first\n" + _plain("linear", [(A, "{weight: 0.5}"), (B, "{weight: 0.5}")])
         + "---\nname: second\n" + _plain("task_arithmetic", [("@@first", "{weight: 0.8}"), (C, "{weight: 0.3}")],
                                          base=BASE),
         multi=True),
]

X, CHATML = "@llama/x", "@llama/chatml"
# mergekit's tests/test_tokenizer.py kinds: base, union, model, slerp with union, forced token sources,
# model_token sources by id and by token, padding; its test_chat_template.py. (Its "legacy mode", no
# tokenizer source over different vocabularies, is refused by mergekit 0.1.5 itself.)
TOKENIZER = [
    Case("tokenizer_slerp_union", _plain("slerp", [(BASE, None), (CHATML, None)], base=BASE, params="{t: 0.5}")
         + "tokenizer_source: union\n", tokenizer=True),
    Case("tokenizer_force_token", _plain("linear", [(BASE, "{weight: 0.6}"), (CHATML, "{weight: 0.4}")], base=BASE)
         + f"tokenizer:\n  source: union\n  tokens:\n    w10: {{source: {CHATML}, force: true}}\n"
         f"    w11: {{source: {BASE}, force: true}}\n", tokenizer=True),
    Case("tokenizer_model_token", _plain("linear", [(BASE, "{weight: 0.6}"), (CHATML, "{weight: 0.4}")], base=BASE)
         + f"tokenizer:\n  source: base\n  tokens:\n"
         f"    w20: {{source: {{kind: model_token, model: {CHATML}, token_id: 40}}, force: true}}\n"
         f"    w21: {{source: {{kind: model_token, model: {BASE}, token: \"<s>\"}}, force: true}}\n", tokenizer=True),
    Case("tokenizer_union_chatml", _plain("linear", [(A, "{weight: 0.5}"), (CHATML, "{weight: 0.5}")], base=A)
         + "tokenizer_source: union\nchat_template: chatml\n", tokenizer=True),
    Case("tokenizer_base", _plain("linear", [(BASE, "{weight: 0.5}"), (X, "{weight: 0.5}")], base=BASE)
         + "tokenizer_source: base\n", tokenizer=True),
    Case("tokenizer_union", _plain("linear", [(A, "{weight: 1.0}"), (X, "{weight: 0.5}"), (B, "{weight: 0.25}")],
                                   base=A) + "tokenizer_source: union\n", tokenizer=True),
    Case("tokenizer_model", _plain("task_arithmetic", [(A, "{weight: 0.5}"), (X, "{weight: 0.5}")], base=BASE)
         + f"tokenizer_source: {X}\n", tokenizer=True),
    Case("tokenizer_union_pad", _plain("linear", [(A, "{weight: 0.5}"), (X, "{weight: 0.5}")], base=A)
         + "tokenizer:\n  source: union\n  pad_to_multiple_of: 16\n", tokenizer=True),
    Case("chat_template_chatml", _plain("linear", [(A, "{weight: 0.5}"), (B, "{weight: 0.5}")])
         + "chat_template: chatml\n", tokenizer=True),
    Case("chat_template_llama3", _plain("linear", [(A, "{weight: 0.5}"), (B, "{weight: 0.5}")])
         + "chat_template: llama3\n", tokenizer=True),
    Case("chat_template_mistral", _plain("linear", [(A, "{weight: 0.5}"), (B, "{weight: 0.5}")])
         + "chat_template: mistral\n", tokenizer=True),
    Case("chat_template_alpaca", _plain("linear", [(A, "{weight: 0.5}"), (B, "{weight: 0.5}")])
         + "chat_template: alpaca\n", tokenizer=True),
    Case("chat_template_exaone", _plain("linear", [(A, "{weight: 0.5}"), (B, "{weight: 0.5}")])
         + "chat_template: exaone\n", tokenizer=True),
    Case("chat_template_literal", _plain("linear", [(A, "{weight: 0.5}"), (B, "{weight: 0.5}")])
         + "chat_template: \"{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}\"\n", tokenizer=True),
]

CASES: list[Case] = FP32 + MK_SUITE + HALF + STRUCTURE + TOKENIZER
BY_ID = {case.id: case for case in CASES}
assert len(BY_ID) == len(CASES), "case ids must be unique"
