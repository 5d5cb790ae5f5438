"""Perplexity of a text under a causal LM, with a sliding window.

The text is tokenized once. Windows of `max_length` tokens start every `stride` tokens; each
window scores only the tokens the previous window did not, so every token after the first
is scored exactly once, with at least `max_length - stride` tokens of context (the method
of the Hugging Face perplexity guide). With `stride == max_length` the windows are disjoint
and each window's first token goes unscored, as there. Windows are batched.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mergesmith.errors import OptionsError
from mergesmith.evaluate.base import Scores, eval_mode, read_text_file
from mergesmith.evaluate.loading import LoadedModel, ModelSource, loaded_model


class PerplexityEvaluator:
    """`<name>` (perplexity, the primary, lower is better), `<name>/nll`, `<name>/tokens`."""

    higher_is_better = False

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        text: str | None = None,
        name: str = "perplexity",
        max_length: int | None = None,
        stride: int | None = None,
        batch_size: int = 8,
        add_bos: bool = True,
        per_line: bool = False,
        device: str | None = None,
    ) -> None:
        """Score the UTF-8 file at `path`, or `text` itself (give exactly one).

        `max_length` defaults to the model's context (at most 1024), `stride` to half of it.
        `per_line`: every non-empty line is a document of its own (BOS + line), for models
        trained on one line per sequence, such as the demo family's.
        """
        if (path is None) == (text is None):
            raise OptionsError("PerplexityEvaluator needs exactly one of path= and text=")
        if path is not None:
            text = read_text_file(path, "text file")
        if not text or not text.strip():
            raise OptionsError("perplexity needs a non-empty text", hint="give a UTF-8 text file with some text in it")
        self.text = text
        self.name = name
        self.primary = name
        self.max_length = max_length
        self.stride = stride
        self.batch_size = batch_size
        self.add_bos = add_bos
        self.per_line = per_line
        self.device = device

    def evaluate(self, model: ModelSource, tokenizer: Any | None = None) -> Scores:
        loaded = loaded_model(model, tokenizer, device=self.device)
        texts = [t for t in self.text.splitlines() if t.strip()] if self.per_line else [self.text]
        nll, count = 0.0, 0
        for text in texts:
            ids = self._token_ids(loaded.tokenizer, text)
            max_length, stride = self._window(loaded.model, len(ids))
            text_nll, text_count = sliding_window_nll(loaded, ids, max_length, stride, self.batch_size)
            nll, count = nll + text_nll, count + text_count
        mean = nll / count
        return {self.name: math.exp(mean), f"{self.name}/nll": mean, f"{self.name}/tokens": count}

    def _token_ids(self, tokenizer: Any, text: str) -> list[int]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        # A BOS gives the first real token a context, as in training.
        if self.add_bos and tokenizer.bos_token_id is not None:
            ids = [tokenizer.bos_token_id, *ids]
        if len(ids) < 2:
            raise OptionsError("perplexity needs a text of at least two tokens", hint="give a longer text")
        return ids

    def _window(self, model: Any, n_tokens: int) -> tuple[int, int]:
        context = getattr(model.config, "max_position_embeddings", None) or 1024
        max_length = min(self.max_length or min(context, 1024), context, n_tokens)
        stride = self.stride or max(1, max_length // 2)
        if max_length < 2 or not 1 <= stride <= max_length:
            raise OptionsError(
                f"need 2 <= max_length and 1 <= stride <= max_length; "
                f"got max_length={max_length}, stride={stride}"
            )
        return max_length, stride


def window_spans(n_tokens: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position) per window; scored positions never overlap."""
    spans = []
    scored_until = 1  # position 0 has no context, so it is never a target
    for begin in range(0, n_tokens, stride):
        end = min(begin + max_length, n_tokens)
        if end > scored_until:
            spans.append((begin, end, max(scored_until, begin + 1)))
            scored_until = end
        if end == n_tokens:
            break
    return spans


def sliding_window_nll(
    loaded: LoadedModel, ids: list[int], max_length: int, stride: int, batch_size: int
) -> tuple[float, int]:
    """Summed negative log-likelihood of ids[1:] and the number of tokens scored."""
    import torch

    spans = window_spans(len(ids), max_length, stride)
    total, count = 0.0, 0
    with eval_mode(loaded.model):
        for start in range(0, len(spans), batch_size):
            batch = spans[start : start + batch_size]
            width = max(end - begin for begin, end, _ in batch)
            tokens = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            targets = torch.full((len(batch), width), -100, dtype=torch.long)
            for row, (begin, end, first) in enumerate(batch):
                tokens[row, : end - begin] = torch.tensor(ids[begin:end])
                mask[row, : end - begin] = 1
                targets[row, first - begin : end - begin] = tokens[row, first - begin : end - begin]
            nll, n = _batch_nll(loaded, tokens, mask, targets)
            total, count = total + nll, count + n
    return total, count


def _batch_nll(loaded: LoadedModel, tokens: Any, mask: Any, targets: Any) -> tuple[float, int]:
    import torch

    device = loaded.device
    logits = loaded.model(input_ids=tokens.to(device), attention_mask=mask.to(device)).logits
    # Position t predicts token t+1; right padding never influences earlier positions.
    logits, targets = logits[:, :-1].float(), targets[:, 1:].to(device)
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )
    return float(nll), int((targets != -100).sum())
