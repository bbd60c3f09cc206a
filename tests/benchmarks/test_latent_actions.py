"""The action-distinctness measure of ``benchmarks/latent_actions.py`` on a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cola_gym.model import CoLAModel


@pytest.fixture(scope="module")
def distinctness(benchmark_script):
    return benchmark_script("latent_actions").action_distinctness


def test_identical_actions_are_counted_as_one(distinctness, tiny_cola_dir: Path) -> None:
    model = CoLAModel.from_pretrained(tiny_cola_dir)
    prefixes = [model.tokenizer("Two plus two is", add_special_tokens=False)["input_ids"]]
    varied = distinctness(model, prefixes, horizon=4)
    assert 1 < varied["distinct_next_tokens"] <= 64 and 0 < varied["next_token_entropy_bits"] <= 6
    assert varied["distinct_repeated"] >= varied["distinct_next_tokens"]
    with torch.no_grad():
        model.codebook.proj.weight.zero_()  # every action the same embedding: one action in effect
    same = distinctness(model, prefixes, horizon=4)
    assert same["distinct_next_tokens"] == same["distinct_repeated"] == same["distinct_then_policy"] == 1
    assert same["next_token_entropy_bits"] == 0
