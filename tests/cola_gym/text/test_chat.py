"""Decoding a turn token by token gives the tokenizer's own text, whatever the tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

import cola_gym
from cola_gym.text.chat import TextCodec, byte_table

MICRO_TOKENIZER = Path(cola_gym.__file__).parent / "pretrained" / "micro-countdown" / "decoder"


@pytest.fixture(scope="module", params=["smollm2", "micro"])
def tokenizer(request: pytest.FixtureRequest, tokenizer_dir: Path):
    return AutoTokenizer.from_pretrained(tokenizer_dir if request.param == "smollm2" else MICRO_TOKENIZER)


def _hostile_sequences(tokenizer, rng: np.random.Generator) -> list[list[int]]:
    """Random ids (special ones among them), text cut inside multi-byte characters, emoji, CJK."""
    texts = ["naïve café 数学 🤖🧮 ∑x² = 42", "\u00e9\u0301 \ufeff\t\n  <answer> 3 </answer>", "日本語のテキスト"]
    sequences = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    byte_tokens = [i for i in range(len(tokenizer)) if len(tokenizer.convert_ids_to_tokens(i) or "") == 1]
    for _ in range(40):
        length = int(rng.integers(1, 60))
        sequences.append([int(i) for i in rng.integers(0, len(tokenizer), size=length)])
        sequences.append([int(i) for i in rng.choice(byte_tokens, size=length)])  # lone bytes: broken UTF-8
    sequences.append([*sequences[0][:3], *tokenizer.all_special_ids, *sequences[0][3:]])
    return sequences


def test_turns_decoded_token_by_token_equal_the_tokenizers_decode(tokenizer) -> None:
    codec = TextCodec(tokenizer, stop_ids=[tokenizer.eos_token_id])
    assert codec.token_bytes is not None  # both shipped tokenizers are byte-level: the constant-work path
    for ids in _hostile_sequences(tokenizer, np.random.default_rng(0)):
        turn_bytes, text = b"", ""
        for end in range(1, len(ids) + 1):
            turn_bytes, text = codec.extend(turn_bytes, ids[:end])
            assert text == tokenizer.decode(ids[:end], skip_special_tokens=True), ids[:end]
        assert codec.decode(ids) == text


def test_tokenizers_that_are_not_byte_level_decode_whole_turns() -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    assert byte_table(tokenizer) is None
    codec = TextCodec(tokenizer, stop_ids=[])
    turn_bytes, text = codec.extend(b"", [1])
    turn_bytes, text = codec.extend(turn_bytes, [1, 2])
    assert (turn_bytes, text) == (b"", tokenizer.decode([1, 2], skip_special_tokens=True))
