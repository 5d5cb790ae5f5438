"""Training the demo family on the CPU: the Llama config, batching, and one training loop.

Pre-training puts the loss on every token; fine-tuning on the answer (and EOS) only, as in
supervised fine-tuning. Batches are right-padded and run without an attention mask: under
causal attention a pad at the end never influences the tokens before it, and pads carry no
loss. Everything is seeded, and the thread count is fixed, so a build repeats on a machine.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

IGNORE = -100
PROGRESS_EVERY = 100  # steps between progress reports


@dataclass(frozen=True)
class ModelSize:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int = 64


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    lr: float
    batch_size: int = 64
    warmup: int = 20
    answer_only: bool = True  # loss on the answer only (fine-tuning) or on all tokens
    # Fine-tuning: this share of the examples are other skills' prompts with the base's own
    # answers (rehearsal), so an expert changes its skill and agrees with the base elsewhere.
    replay: float = 0.0
    # Fine-tuning: train the attention and MLP matrices only (as LoRA fine-tunes do); the
    # embeddings, head and norms stay the base's, shared by every expert.
    matrices_only: bool = False


def llama_config(vocab_size: int, size: ModelSize, tokenizer: Any) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_key_value_heads,
        max_position_embeddings=size.max_position_embeddings,
        # Untied embeddings, as in Llama 2 7B: merges then handle embed_tokens and lm_head.
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def encode(
    tokenizer: Any, pairs: Sequence[tuple[str, str]], *, answer_only: bool
) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per (prompt, answer): BOS prompt answer EOS.

    Prompt and answer are tokenized apart, so training sees exactly the prompt tokens that
    generation will be given.
    """
    prompts = tokenizer([p for p, _ in pairs])["input_ids"]
    answers = tokenizer([a for _, a in pairs], add_special_tokens=False)["input_ids"]
    out = []
    for prompt, answer in zip(prompts, answers):
        ids = [*prompt, *answer, tokenizer.eos_token_id]
        labels = [IGNORE] * len(prompt) + ids[len(prompt) :] if answer_only else ids
        out.append((ids, labels))
    return out


def collate(batch: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.tensor([x + [pad_id] * (width - len(x)) for x, _ in batch])
    labels = torch.tensor([y + [IGNORE] * (width - len(y)) for _, y in batch])
    return ids, labels


def train(
    model: Any,
    data: Sequence[tuple[list[int], list[int]]],
    config: TrainConfig,
    pad_id: int,
    *,
    freeze_unused_outputs: bool = False,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """AdamW with linear warm-up and linear decay to zero; returns the loss per step.

    `data` holds steps * batch_size examples, consumed in order (no shuffling needed:
    generated examples are already in random order). `freeze_unused_outputs` keeps the
    output rows of tokens absent from `data` unchanged (see `_freeze_unused_output_rows`).
    """
    import torch

    hook = _freeze_unused_output_rows(model, data) if freeze_unused_outputs else None
    if config.matrices_only:
        for name, param in model.named_parameters():
            param.requires_grad_(name.split(".")[-2] in MATRIX_NAMES)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    total = config.steps

    def schedule(step: int) -> float:
        return min(1.0, (step + 1) / config.warmup) * max(0.0, 1.0 - step / total)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    size = config.batch_size
    losses = []
    model.train()
    for step in range(total):
        ids, labels = collate(data[step * size : (step + 1) * size], pad_id)
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if progress is not None and (step + 1) % PROGRESS_EVERY == 0:
            progress(step + 1, sum(losses[-PROGRESS_EVERY:]) / PROGRESS_EVERY)
    if hook is not None:
        hook.remove()
    model.requires_grad_(True)
    model.eval()
    return losses


# The matrices a fine-tune with `matrices_only` trains: attention and MLP, where LoRA adapts.
MATRIX_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _freeze_unused_output_rows(model: Any, data: Sequence[tuple[list[int], list[int]]]) -> Any:
    """Zero the gradient of lm_head rows whose token never occurs in `data`.

    The softmax pushes every row's logit down a little; Adam normalises that tiny gradient
    into a step of about `lr`, so at our learning rates the ~300 unused rows (byte tokens a
    skill never sees) drift by as much as their own norm and make most of a task vector.
    Real fine-tunes (lr ~2e-5) hardly feel this; freezing the rows keeps our task vectors
    about the skill. Embedding rows of unused tokens get no gradient anyway.
    """
    import torch

    weight = model.get_output_embeddings().weight
    used = torch.zeros(weight.shape[0], 1, dtype=weight.dtype)
    used[sorted({token for ids, _ in data for token in ids})] = 1.0
    return weight.register_hook(lambda grad: grad * used.to(grad.device))


def seed_everything(seed: int) -> random.Random:
    """Seed torch (model init) and return the data generator's RNG."""
    import torch

    torch.manual_seed(seed)
    return random.Random(seed)
