"""Shared fixtures: tiny randomly initialised Llama decoders with real CoLA heads.

The decoders use the real SmolLM2 tokenizer (chat template included), 2 layers of width
64: about 1 ms per decoded token on a CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """The CPU suite stays on the CPU on a CUDA machine too: ``device="auto"`` would pick the GPU,
    whose batched kernels do not promise the exact equalities these tests check. The GPU suite
    (``-m gpu``) chooses its devices itself."""
    if "gpu" not in (config.option.markexpr or "").replace("not gpu", ""):
        os.environ.setdefault("COLA_DEVICE", "cpu")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The test data sets: ``$COLA_DATA_DIR``, else ``../shared/data`` beside the repository."""
    path = Path(os.environ.get("COLA_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (path / "math500" / "test.jsonl").is_file():
        pytest.fail(f"test data not found at {path}; set COLA_DATA_DIR to the folder holding math500/, math/, gsm8k/")
    return path


@pytest.fixture(scope="session")
def default_decoder_dir() -> Path:
    """The embedded default decoder (SmolLM2-135M-Instruct), converted once per cache."""
    from cola_gym.model.decoders import embedded_decoder_path

    return embedded_decoder_path()


@pytest.fixture(scope="session")
def tokenizer_dir(default_decoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SmolLM2 tokenizer alone."""
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("tokenizer")
    AutoTokenizer.from_pretrained(default_decoder_dir).save_pretrained(path)
    return path


def build_tiny_decoder(tokenizer_dir: Path, path: Path, seed: int = 0, hidden_size: int = 64) -> Path:
    """Writes a tiny random Llama with the SmolLM2 tokenizer to ``path``."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def make_tiny_decoder(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Builds more tiny decoders: ``make_tiny_decoder(seed=..., hidden_size=...)``."""

    def make(seed: int = 0, hidden_size: int = 64) -> Path:
        return build_tiny_decoder(tokenizer_dir, tmp_path_factory.mktemp("decoder"), seed, hidden_size)

    return make


@pytest.fixture(scope="session")
def tiny_decoder_dir(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama decoder checkpoint (hidden 64, 2 layers)."""
    return build_tiny_decoder(tokenizer_dir, tmp_path_factory.mktemp("tiny-decoder"))


def perturb_heads(model: torch.nn.Module, seed: int = 1) -> None:
    """Random, large world-model and codebook weights: the next token then depends on the action."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.world_model.parameters():
            param.normal_(0.0, 0.3, generator=generator)
        model.codebook.proj.weight.normal_(0.0, 1.0, generator=generator)


@pytest.fixture(scope="session")
def tiny_cola_dir(tiny_decoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CoLA checkpoint on the tiny decoder whose world model follows its actions."""
    from cola_gym.model import CoLAModel

    model = CoLAModel.from_pretrained(str(tiny_decoder_dir))
    perturb_heads(model)
    path = tmp_path_factory.mktemp("tiny-cola")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_cola(tiny_cola_dir: Path) -> torch.nn.Module:
    """The shared in-process model of ``tiny_cola_dir`` (what envs made from that path use)."""
    from cola_gym.model import shared_model

    return shared_model(str(tiny_cola_dir))


def _direction_for(embeddings: torch.Tensor, token: int, max_steps: int = 2000) -> torch.Tensor:
    """A vector v whose LM-head logits ``E v`` are highest at ``token`` by a margin of 1 (perceptron)."""
    direction = embeddings[token].clone()
    for _ in range(max_steps):
        logits = embeddings @ direction
        target = logits[token].clone()
        logits[token] = -float("inf")
        rival = int(logits.argmax())
        margin = target - logits[rival]
        if margin > 0:
            return direction / margin
        direction += embeddings[token] - embeddings[rival]
    raise AssertionError(f"token {token} cannot be made the argmax of the LM head")


def spell_tokens(model: torch.nn.Module, tokens: Sequence[int], strength: float = 100.0) -> None:
    """Sets a one-merge world model so that action ``i`` emits ``tokens[i]`` whatever the prefix.

    Codes are orthonormal (needs K <= d); the merge MLP's gate and up projections pick out
    the code, and its output adds a vector whose logits favour ``tokens[i]`` by ``strength``.
    """
    num_actions, width = model.num_actions, model.hidden_size
    assert len(model.world_model.layers) == 1 and len(tokens) <= num_actions <= width
    codes = torch.linalg.qr(torch.randn(width, num_actions, generator=torch.Generator().manual_seed(0)))[0]
    embeddings = model.lm_head.weight.detach().float()
    merge = model.world_model.layers[0]
    assert merge.gate_proj.out_features == num_actions
    gate = 20.0  # silu(20) = 20 to 8 digits: the chosen code's unit passes, the others give silu(0) = 0
    with torch.no_grad():
        model.codebook.proj.weight.copy_(codes)
        merge.gate_proj.weight.zero_()
        merge.up_proj.weight.zero_()
        merge.gate_proj.weight[:, width:] = gate * codes.t()
        merge.up_proj.weight[:, width:] = codes.t()
        merge.down_proj.weight.zero_()
        for action, token in enumerate(tokens):
            merge.down_proj.weight[:, action] = strength * _direction_for(embeddings, token) / gate


@pytest.fixture(scope="session")
def speller(tiny_decoder_dir: Path) -> tuple[torch.nn.Module, Callable[[str], list[int]]]:
    """``(model, spell)``: ``spell(text)`` rewires the world model to write ``text`` and
    returns the actions that write it (action i -> the text's i-th distinct token)."""
    from cola_gym.model import CoLAConfig, CoLAModel

    base = CoLAModel.from_pretrained(str(tiny_decoder_dir))
    config = CoLAConfig(num_actions=32, merge_num_layers=1, merge_intermediate_size=32)
    model = CoLAModel(config, base.decoder, base.tokenizer)

    def spell(text: str) -> list[int]:
        tokens = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        vocabulary = list(dict.fromkeys(tokens))
        spell_tokens(model, vocabulary)
        return [vocabulary.index(t) for t in tokens]

    return model, spell
