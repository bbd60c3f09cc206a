"""Batched generation helpers against Hugging Face's own generate and loss."""

from __future__ import annotations

import math

import torch

from cola_gym.model.generation import (
    decoder_perplexity,
    greedy_policy,
    left_pad,
    policy_sampler,
    rollout,
    sample_decoder,
    uniform_sampler,
)


def test_greedy_decoder_sampling_matches_generate(tiny_cola) -> None:
    prompts = [tiny_cola.tokenizer("The answer is")["input_ids"], tiny_cola.tokenizer("Hi")["input_ids"]]
    ids, mask = left_pad(prompts)
    ours = sample_decoder(tiny_cola, tiny_cola.start(ids, mask), 6, temperature=0.0)
    theirs = tiny_cola.decoder.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0
    )[:, ids.shape[1] :]
    assert torch.equal(ours, theirs)


def test_decoder_perplexity_is_the_exponentiated_loss(tiny_cola) -> None:
    prompt, continuation = [1, 42, 7, 99], [5, 6, 7]
    with torch.no_grad():
        labels = torch.tensor([[-100] * len(prompt) + continuation])
        loss = tiny_cola.decoder(input_ids=torch.tensor([prompt + continuation]), labels=labels).loss
    assert math.isclose(decoder_perplexity(tiny_cola, [prompt], [continuation]), math.exp(float(loss)), rel_tol=1e-4)


def test_action_samplers(tiny_cola) -> None:
    state = tiny_cola.start(torch.tensor([[1, 2, 3]] * 4), track_policy=True)
    greedy = rollout(tiny_cola, state, 5, greedy_policy)
    assert torch.equal(greedy, rollout(tiny_cola, state, 5, greedy_policy))
    assert (greedy == greedy[0]).all()  # identical rows, deterministic policy
    sampled = rollout(tiny_cola, state, 5, policy_sampler(top_k=40, generator=torch.Generator().manual_seed(1)))
    uniform = rollout(tiny_cola, state, 5, uniform_sampler(64, torch.Generator().manual_seed(1)))
    assert sampled.shape == uniform.shape == (4, 5)
    assert len({tuple(r) for r in uniform.tolist()}) > 1
