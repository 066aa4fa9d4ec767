"""Deterministic, length-bounded decoding over a captioner's next-token log-probabilities: beam search, with
greedy decoding as its one-beam case.

open_clip 3.3's ``CoCa.generate`` imports ``BeamSearchScorer`` from transformers, which transformers 5 removed,
so clipfoundry decodes on its own. The search only needs a function that gives, for a batch of prefixes (each
tagged with the input it belongs to), the log-probabilities of the next token; it knows nothing of images or
tokenizers, so it is tested against a step-by-step reference on the real model.

The algorithm, per input: every step extends each live hypothesis by every token and ranks the extensions by
total log-probability; going down that ranking, an extension that writes the end token becomes a finished
hypothesis (its score divided by ``length ** length_penalty``, the length counting the end token), any other
one becomes live, until ``num_beams`` are live. An input is done once it has ``num_beams`` finished
hypotheses, or when ``max_new_tokens`` have been written; then its live hypotheses compete too, unfinished.
With one beam this is greedy decoding: the most probable next token each step, stopping at the end token. No
sampling and no global random state: the same model and inputs always give the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

NextLogProbs = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(rows, prefixes) -> log_probs``: ``rows`` (n,) says which input each prefix (n × length) belongs to;
``log_probs`` (n × vocabulary) is the distribution of the token that follows each prefix."""


@dataclass(frozen=True)
class DecodeConfig:
    max_new_tokens: int = 30
    num_beams: int = 1
    length_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be at least 1, got {self.num_beams}")


@dataclass(frozen=True)
class Decoded:
    """One input's best hypothesis: its tokens (start and end token left out), the sum of their log-probabilities
    (the end token's included when it was written), and whether the end token was written in time."""

    tokens: tuple[int, ...]
    logprob: float
    finished: bool

    @property
    def length(self) -> int:
        """Tokens the score covers: the end token counts once written."""
        return len(self.tokens) + self.finished


def normalised(logprob: float, length: int, length_penalty: float) -> float:
    return logprob / max(1, length) ** length_penalty


def decode(next_logprobs: NextLogProbs, n_inputs: int, start: int, end: int, config: DecodeConfig) -> list[Decoded]:
    """The best hypothesis per input, in input order (see the module docstring for the algorithm)."""
    if n_inputs == 0:
        return []
    beams = config.num_beams
    rows = torch.arange(n_inputs)
    prefixes = torch.full((n_inputs, 1), start, dtype=torch.long)
    scores = torch.zeros(n_inputs, dtype=torch.float64)
    finished: list[list[Decoded]] = [[] for _ in range(n_inputs)]
    done = [False] * n_inputs
    for _ in range(config.max_new_tokens):
        candidates = scores[:, None] + next_logprobs(rows, prefixes).to(torch.float64)
        vocabulary = candidates.shape[1]
        keep_rows, keep_prefixes, keep_scores = [], [], []
        for i in range(n_inputs):
            if done[i]:
                continue
            mine = torch.nonzero(rows == i).flatten()
            flat = candidates[mine].flatten()
            values, order = torch.topk(flat, min(2 * beams, flat.numel()))
            live = 0
            for value, index in zip(values.tolist(), order.tolist(), strict=True):
                parent, token = mine[index // vocabulary], index % vocabulary
                if token == end:
                    finished[i].append(Decoded(tuple(prefixes[parent, 1:].tolist()), value, True))
                    continue
                keep_rows.append(i)
                keep_prefixes.append(torch.cat([prefixes[parent], prefixes.new_tensor([token])]))
                keep_scores.append(value)
                live += 1
                if live == beams:
                    break
            done[i] = len(finished[i]) >= beams
        pending = [k for k, i in enumerate(keep_rows) if not done[i]]
        if not pending:
            break
        rows = torch.tensor([keep_rows[k] for k in pending])
        prefixes = torch.stack([keep_prefixes[k] for k in pending])
        scores = torch.tensor([keep_scores[k] for k in pending], dtype=torch.float64)
    else:
        for k, i in enumerate(rows.tolist()):
            finished[i].append(Decoded(tuple(prefixes[k, 1:].tolist()), float(scores[k]), False))
    return [max(hyps, key=lambda h: normalised(h.logprob, h.length, config.length_penalty)) for hyps in finished]
