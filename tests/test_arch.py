from __future__ import annotations

from mergesmith.arch import detect_layout, head_and_embedding

LLAMA = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
         "model.layers.1.mlp.up_proj.weight", "model.norm.weight", "lm_head.weight"]
GPT2 = ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight",
        "transformer.h.11.mlp.c_fc.bias", "transformer.ln_f.weight"]


def test_llama_roles() -> None:
    layout = detect_layout(LLAMA)
    assert (layout.container, layout.num_layers) == ("model.layers", 2)
    assert layout.role("model.embed_tokens.weight").role == "pre"
    role = layout.role("model.layers.1.mlp.up_proj.weight")
    assert (role.role, role.layer, role.rest) == ("layer", 1, "mlp.up_proj.weight")
    assert layout.role("model.norm.weight").role == "post"
    assert layout.role("lm_head.weight").role == "post"
    assert layout.layer_name(7, "mlp.up_proj.weight") == "model.layers.7.mlp.up_proj.weight"


def test_gpt2_roles_and_tied_head() -> None:
    layout = detect_layout(GPT2)
    assert (layout.container, layout.num_layers) == ("transformer.h", 12)
    assert layout.role("transformer.wpe.weight").role == "pre"
    assert layout.role("transformer.ln_f.weight").role == "post"
    assert head_and_embedding(GPT2) == (None, "transformer.wte.weight")


def test_layer_stack_is_the_container_with_most_indices() -> None:
    names = ["vision.blocks.0.w", "model.language_model.layers.0.w", "model.language_model.layers.1.w",
             "model.language_model.layers.2.w"]
    assert detect_layout(names).container == "model.language_model.layers"
