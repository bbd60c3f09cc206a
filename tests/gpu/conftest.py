"""Fixtures of the CUDA tests: CoLA models loaded onto the device through the project's loader.

Run them with ``pytest -m gpu tests/gpu`` on a machine with a CUDA device; every module here
is marked ``gpu`` and skipped where ``torch.cuda.is_available()`` is false, and the quantized
tests are skipped where bitsandbytes is not installed.

The models are the root conftest's tiny random Llamas (the real SmolLM2 tokenizer). Their
CoLA checkpoint is built here on the CPU, whatever device ``"auto"`` would pick on a CUDA
host, and every test then loads it with ``device="cuda"`` (bfloat16).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

BNB_SKIP_REASON = "quantized loading needs bitsandbytes (pip install bitsandbytes)"


@pytest.fixture(scope="session")
def bnb() -> Any:
    """bitsandbytes, or a skip of the test that asks for it."""
    return pytest.importorskip("bitsandbytes", reason=BNB_SKIP_REASON)


@pytest.fixture(scope="session")
def cuda_cola_dir(tiny_decoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CoLA checkpoint on the tiny decoder whose world model follows its actions.

    The merge weights are random at a moderate scale (0.1, not the root conftest's 0.3): the
    action changes the next token, while a bf16 rounding difference between a batched and
    a single-row kernel rarely does (the larger scale amplifies such differences).
    """
    from cola_gym.model import CoLAModel, DecoderSettings

    model = CoLAModel.from_pretrained(str(tiny_decoder_dir), settings=DecoderSettings(device="cpu"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.world_model.parameters():
            param.normal_(0.0, 0.1, generator=generator)
        model.codebook.proj.weight.normal_(0.0, 1.0, generator=generator)
    path = tmp_path_factory.mktemp("cuda-cola")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def cuda_model(cuda_cola_dir: Path) -> Any:
    """The process's shared model of ``cuda_cola_dir`` on the device: the one envs made with
    ``model=str(cuda_cola_dir), device="cuda"`` use."""
    from cola_gym.model import DecoderSettings, shared_model

    return shared_model(str(cuda_cola_dir), DecoderSettings(device="cuda"))


def _state_tensors(state: Any) -> dict[str, torch.Tensor]:
    """Every tensor of a ``DecodingState`` by name (KV caches whole: padding columns included)."""
    tensors: dict[str, torch.Tensor] = {"hidden": state.hidden, "attention_mask": state.attention_mask}
    tensors.update({f"{name} output": output for name, output in state.head_outputs.items()})
    for cache, pairs in {"decoder": state.decoder_kv, **state.head_kv}.items():
        for layer, (keys, values) in enumerate(pairs):
            tensors[f"{cache} layer {layer} keys"] = keys
            tensors[f"{cache} layer {layer} values"] = values
    return tensors


@pytest.fixture(scope="session")
def check_state() -> Any:
    """``check_state(state)``: asserts that every tensor of a decoding state is on the device and finite."""

    def check(state: Any, where: str = "") -> None:
        tensors = _state_tensors(state)
        elsewhere = [name for name, tensor in tensors.items() if tensor.device.type != "cuda"]
        assert not elsewhere, f"{where}: not on the CUDA device: {elsewhere}"
        broken = [name for name, tensor in tensors.items() if not bool(torch.isfinite(tensor).all())]
        assert not broken, f"{where}: NaN or infinite values in {broken}"

    return check
