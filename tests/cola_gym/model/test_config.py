"""CoLAConfig: validation messages and shapes derived from the decoder."""

from __future__ import annotations

import pytest
from transformers import LlamaConfig

from cola_gym.model import CoLAConfig

SMOLLM2 = LlamaConfig(
    hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3
)
LLAMA_8B = LlamaConfig(
    hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8
)


def test_compact_defaults_scale_with_the_decoder() -> None:
    config = CoLAConfig().resolve(SMOLLM2)
    assert config.is_resolved
    assert (config.idm_num_layers, config.policy_num_layers, config.merge_num_layers) == (2, 2, 2)
    assert (config.head_hidden_size, config.head_intermediate_size, config.merge_intermediate_size) == (576, 768, 768)
    assert (config.head_num_attention_heads, config.head_num_key_value_heads) == (9, 3)


def test_paper_scale_reproduces_the_release_shapes() -> None:
    config = CoLAConfig(scale="paper").resolve(LLAMA_8B)
    assert (config.idm_num_layers, config.policy_num_layers) == (4, 8)
    assert config.head_intermediate_size == config.merge_intermediate_size == 14336


def test_explicit_fields_win_and_a_narrower_head_gets_its_own_heads() -> None:
    config = CoLAConfig(num_actions=16, policy_num_layers=3, head_hidden_size=256).resolve(SMOLLM2)
    assert (config.num_actions, config.policy_num_layers, config.idm_num_layers) == (16, 3, 2)
    assert config.head_hidden_size == 256
    assert config.head_num_attention_heads == 4  # 256 / the decoder's head_dim of 64
    assert config.head_num_key_value_heads == 4


def test_round_trip_through_a_dict() -> None:
    config = CoLAConfig(num_actions=32, output_form="paper").resolve(SMOLLM2)
    assert CoLAConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_actions": 1}, "num_actions must be an int >= 2"),
        ({"policy_num_layers": 0}, "policy_num_layers must be a positive int"),
        ({"output_form": "sum"}, "output_form must be one of"),
        ({"scale": "huge"}, "scale must be one of"),
        ({"head_hidden_size": 100, "head_num_attention_heads": 3}, "must be divisible"),
        ({"head_num_attention_heads": 6, "head_num_key_value_heads": 4}, "must be a multiple"),
    ],
)
def test_invalid_values_say_how_to_fix_them(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CoLAConfig(**kwargs)


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown CoLAConfig field"):
        CoLAConfig.from_dict({"num_actions": 64, "codebook_size": 64})
