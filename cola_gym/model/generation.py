"""Batched generation with latent actions: left padding, action samplers, rollouts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from cola_gym.model.decoding import DecodingState

ActionChooser = Callable[[DecodingState], torch.Tensor]
"""Maps a decoding state to the next actions ``[B]``."""


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> ``(ids [B, T], attention_mask [B, T])`` padded on the left.

    >>> ids, mask = left_pad([[5, 6, 7], [8]])
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), width, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            ids[row, width - len(sequence) :] = torch.as_tensor(list(sequence), dtype=torch.long)
            mask[row, width - len(sequence) :] = 1
    return ids, mask


def right_pad(sequences: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> ``(ids [B, T], lengths [B])`` padded on the right (the form
    :meth:`~cola_gym.model.CoLAModel.append_ragged` takes).

    >>> ids, lengths = right_pad([[5, 6, 7], [8], []])
    >>> ids.tolist(), lengths.tolist()
    ([[5, 6, 7], [8, 0, 0], [0, 0, 0]], [3, 1, 0])
    """
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    ids = torch.full((len(sequences), max((len(s) for s in sequences), default=1) or 1), pad_id, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            ids[row, : len(sequence)] = torch.as_tensor(list(sequence), dtype=torch.long)
    return ids, lengths


def sample_top_k(logits: torch.Tensor, top_k: int, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """Samples ``[B]`` indices from ``[B, K]`` logits restricted to the top ``top_k`` (the release's sampler)."""
    values, indices = logits.float().cpu().topk(min(top_k, logits.shape[-1]), dim=-1)
    probs = torch.softmax(values / temperature, dim=-1)
    picks = torch.multinomial(probs, 1, generator=generator)
    return indices.gather(-1, picks).squeeze(-1)


def policy_sampler(
    top_k: int = 40, temperature: float = 1.0, generator: torch.Generator | None = None
) -> ActionChooser:
    """Actions sampled from the CoLA policy (needs states that track the policy)."""
    rng = generator or torch.Generator().manual_seed(0)

    def choose(state: DecodingState) -> torch.Tensor:
        if state.policy_logits is None:
            raise ValueError("policy sampling needs a decoding state with track_policy=True")
        return sample_top_k(state.policy_logits, top_k, temperature, rng)

    return choose


def greedy_policy(state: DecodingState) -> torch.Tensor:
    """The policy's most likely action."""
    if state.policy_logits is None:
        raise ValueError("the greedy policy needs a decoding state with track_policy=True")
    return state.policy_logits.argmax(-1).cpu()


def uniform_sampler(num_actions: int, generator: torch.Generator | None = None) -> ActionChooser:
    """Uniformly random latent actions."""
    rng = generator or torch.Generator().manual_seed(0)
    return lambda state: torch.randint(0, num_actions, (state.batch_size,), generator=rng)


@torch.inference_mode()
def rollout(model: Any, state: DecodingState, num_tokens: int, choose: ActionChooser) -> torch.Tensor:
    """Decodes ``num_tokens`` tokens for every row; returns them, ``[B, num_tokens]``."""
    tokens = []
    for _ in range(num_tokens):
        step_tokens, state = model.step(state, choose(state).to(model.device))
        tokens.append(step_tokens.cpu())
    return torch.stack(tokens, dim=1)


@torch.inference_mode()
def sample_decoder(
    model: Any,
    state: DecodingState,
    num_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The bare decoder's own continuation, ``[B, num_tokens]``: ancestral sampling, or greedy at temperature 0."""
    rng = generator or torch.Generator().manual_seed(0)
    tokens = []
    for _ in range(num_tokens):
        logits = model.decoder_logits(state.hidden).float().cpu()
        if temperature == 0:
            step_tokens = logits.argmax(-1)
        else:
            step_tokens = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=rng).squeeze(-1)
        tokens.append(step_tokens)
        state = model.append(state, step_tokens[:, None].to(model.device))
    return torch.stack(tokens, dim=1)


@torch.inference_mode()
def decoder_perplexity(model: Any, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]) -> float:
    """Perplexity of ``continuations`` given ``prompts`` under the bare decoder (token-weighted)."""
    total, count = 0.0, 0
    for prompt, continuation in zip(prompts, continuations, strict=True):
        if not continuation:
            continue
        ids = torch.tensor([list(prompt) + list(continuation)], device=model.device)
        logits = model.decoder_logits(model.hidden_states(ids))[0, len(prompt) - 1 : -1].float()
        target = torch.tensor(list(continuation), device=logits.device)
        total += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
        count += len(continuation)
    return float(torch.exp(torch.tensor(total / max(count, 1))))


def cut_at_stop(tokens: Sequence[int], stop_ids: frozenset[int]) -> list[int]:
    """The tokens before the first stop token.

    >>> cut_at_stop([5, 6, 2, 7], frozenset({2}))
    [5, 6]
    """
    out = []
    for token in tokens:
        if token in stop_ids:
            break
        out.append(int(token))
    return out
