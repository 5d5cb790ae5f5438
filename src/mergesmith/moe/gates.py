"""Router (gate) vectors of a MoE build, one per expert and layer.

`hidden`: for each layer, the hidden state entering that layer, averaged over the tokens of
the expert's positive prompts, minus the same average for its negative prompts, normalised
to unit length. A token then scores highest on the expert whose prompts its hidden state
resembles (the router computes one dot product per expert). The BOS token is fed (the model
expects it) but left out of the average: its hidden state is the same for every prompt and,
in large models, far larger than the others ("massive activations"), so it would swamp the
difference between experts. mergekit's `hidden` takes the last token only.

`mlp_input` (a mergesmith extension): the same with the state the router actually sees, the
MLP's input (after attention and the post-attention norm) rather than the layer's input. On
the demo family's four skills it routes held-out prompts to their expert far more often
(see docs/moe.md).

`cheap_embed`: the same with token embeddings instead of hidden states, one vector for every
layer (no forward pass). `random`: standard normal. `uniform_random`: U(-1/sqrt(h), 1/sqrt(h)),
torch.nn.Linear's initialisation. The random modes are seeded.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from mergesmith.errors import CheckpointError, RecipeError
from mergesmith.io.checkpoint import Checkpoint
from mergesmith.lazy_torch import torch
from mergesmith.moe.config import Expert, MoEConfig

log = logging.getLogger("mergesmith")
PARALLEL_COSINE = 0.9  # gates closer than this route (nearly) the same tokens


def gate_vectors(config: MoEConfig, base: Checkpoint, *, seed: int = 0, device: str = "cpu") -> Any:
    """(layers, experts + shared experts, hidden) float32 gate vectors."""
    experts = list(config.experts) + list(config.shared_experts or [])
    layers, hidden = base.num_layers, _hidden_size(base)
    if config.gate_mode in ("random", "uniform_random"):
        gen = torch.Generator().manual_seed(seed)
        if config.gate_mode == "random":
            return torch.randn((layers, len(experts), hidden), generator=gen)
        bound = 1.0 / math.sqrt(hidden)
        return (torch.rand((layers, len(experts), hidden), generator=gen) * 2 - 1) * bound
    encoder = PromptEncoder(base, config.gate_mode, device)
    try:
        vectors = [encoder.gate(expert, index) for index, expert in enumerate(experts)]
    finally:
        encoder.close()
    return torch.stack(vectors, dim=1)


def _hidden_size(base: Checkpoint) -> int:
    size = base.config.get("hidden_size")
    if not isinstance(size, int):
        raise CheckpointError(f"base_model {base.ref!r}: config.json has no hidden_size",
                              hint="a MoE base must be a Llama, Mistral or Qwen model with its config.json")
    return size


class PromptEncoder:
    """Mean hidden states (or embeddings) of prompts under the base model, per layer."""

    def __init__(self, base: Checkpoint, mode: str, device: str) -> None:
        self.base, self.mode, self.device = base, mode, device
        self.tokenizer = load_tokenizer(base)
        self.layers = base.num_layers
        self.model: Any = None
        self.embed: Any = None
        if mode in ("hidden", "mlp_input"):
            self.model = load_causal_lm(base, device)
        else:
            from mergesmith.arch import head_and_embedding

            _, name = head_and_embedding(base.tensors)
            if name is None:
                raise CheckpointError(f"base_model {base.ref!r}: no token embedding tensor found for cheap_embed",
                                      hint="use gate_mode: hidden or random")
            self.embed = base.read(name).float()

    def close(self) -> None:
        self.model = self.embed = None

    def gate(self, expert: Expert, index: int) -> Any:
        vec = self.mean(expert.positive_prompts or [], expert, index)
        if expert.negative_prompts:
            vec = vec - self.mean(expert.negative_prompts, expert, index)
        norm = vec.norm(dim=-1, keepdim=True)
        if bool((norm < 1e-6).any()):
            raise RecipeError(f"expert {index} ({expert.source_model}): its positive and negative prompts give "
                              "the same mean hidden state, so its gate vector is zero",
                              hint="make the negative prompts differ from the positive ones")
        return vec / norm

    def mean(self, prompts: list[str], expert: Expert, index: int) -> Any:
        """(layers, hidden): the average over prompts of each prompt's token average."""
        means = []
        for prompt in prompts:
            ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            if ids:
                means.append(self._prompt_mean(ids))
        if not means:
            raise RecipeError(f"expert {index} ({expert.source_model}): its prompts {prompts!r} tokenize to nothing",
                              hint="give prompts with real text")
        return torch.stack(means).mean(dim=0)

    def _prompt_mean(self, ids: list[int]) -> Any:
        if self.embed is not None:
            return self.embed[torch.tensor(ids)].mean(dim=0).expand(self.layers, -1)
        bos = self.tokenizer.bos_token_id
        start = 1 if bos is not None else 0
        full = ([bos] if bos is not None else []) + ids
        captured: dict[int, Any] = {}
        hooks = [mlp.register_forward_pre_hook(lambda _m, args, i=i: captured.__setitem__(i, args[0]))
                 for i, mlp in enumerate(self._mlps())] if self.mode == "mlp_input" else []
        try:
            with torch.no_grad():
                out = self.model(input_ids=torch.tensor([full], device=self.device), output_hidden_states=True)
        finally:
            for hook in hooks:
                hook.remove()
        if self.mode == "mlp_input":
            states = torch.stack([captured[i].reshape(len(full), -1) for i in range(self.layers)])[:, start:, :]
        else:  # hidden_states[i] is the input of layer i; the last one is the final norm's input
            states = torch.stack(out.hidden_states[: self.layers])[:, 0, start:, :]
        return states.float().mean(dim=1).cpu()

    def _mlps(self) -> list[Any]:
        layers = getattr(getattr(self.model, "model", None), "layers", None)
        if layers is None or len(layers) != self.layers or not all(hasattr(la, "mlp") for la in layers):
            raise CheckpointError(f"base_model {self.base.ref!r}: cannot find its layers' MLPs for mlp_input gates",
                                  hint="use gate_mode: hidden")
        return [layer.mlp for layer in layers]


def load_tokenizer(base: Checkpoint) -> Any:
    from transformers import AutoTokenizer

    if base.path is None:
        raise CheckpointError(f"base_model {base.ref!r} has no directory to load a tokenizer from",
                              hint="give base_model as a model folder with its tokenizer, or use gate_mode: random")
    try:
        # trust_remote_code=False: never run (or ask to run) a model folder's own tokenizer code
        return AutoTokenizer.from_pretrained(base.path, local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types for missing or odd tokenizers
        raise CheckpointError(f"base_model {base.ref!r}: cannot load its tokenizer from {base.path}: {exc}",
                              hint="prompt gates need the base model's tokenizer files; "
                                   "or use gate_mode: random") from None


def load_causal_lm(ckpt: Checkpoint, device: str = "cpu") -> Any:
    """A transformers model of a checkpoint, in eval mode (from its directory, or its tensors)."""
    import transformers

    try:
        cfg = transformers.AutoConfig.for_model(**ckpt.config)
        cls = getattr(transformers, (ckpt.config.get("architectures") or [""])[0], None)
        if cls is None:
            cls = transformers.AutoModelForCausalLM.from_config(cfg, trust_remote_code=False).__class__
        if type(ckpt) is Checkpoint and ckpt.path is not None:
            model = cls.from_pretrained(ckpt.path, dtype="auto", local_files_only=True)
        else:  # an adapter applied on the fly, or in-memory tensors: hand the tensors over
            state = {name: ckpt.read(name) for name in ckpt.tensors}
            model = cls.from_pretrained(None, config=cfg, state_dict=state, dtype="auto")
    except Exception as exc:  # transformers raises many types for unknown or broken models
        raise CheckpointError(f"model {ckpt.ref!r}: transformers cannot load it to compute hidden states: "
                              f"{type(exc).__name__}: {exc}",
                              hint="hidden gates run the base model; use gate_mode: cheap_embed or random "
                                   "for models transformers cannot load") from None
    return model.to(device).eval()


def parallel_gate_warnings(gates: Any, names: list[str], threshold: float = PARALLEL_COSINE) -> list[str]:
    """Pairs of experts whose gates are nearly parallel in some layers (degenerate routing)."""
    unit = gates / gates.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = unit @ unit.transpose(1, 2)  # (layers, experts, experts)
    warnings = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            layers = [layer for layer in range(cos.shape[0]) if float(cos[layer, i, j]) > threshold]
            if layers:
                worst = float(cos[:, i, j].max())
                warnings.append(
                    f"experts {i} ({names[i]}) and {j} ({names[j]}) have nearly parallel gates "
                    f"(cosine up to {worst:.3f}) in {_layer_list(layers, cos.shape[0])}: the router will "
                    "hardly tell them apart there; make their prompts more different, or give each "
                    "expert the other experts' prompts as negative_prompts")
    return warnings


def _layer_list(layers: list[int], total: int) -> str:
    if len(layers) == total:
        return "all layers"
    return ("layer " if len(layers) == 1 else "layers ") + ", ".join(map(str, layers))
