"""Loading onto the device: bf16, 4-bit nf4 and 8-bit decoders, the CoLA heads beside them."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from cola_gym.model import CoLAModel, DecoderSettings, load_decoder

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

LAYER_TYPES = {"none": "Linear", "4bit": "Linear4bit", "8bit": "Linear8bitLt"}


def _decoder_checks(decoder: Any, quantization: str) -> None:
    """Every tensor on the device; the blocks' layers of the expected kind; the LM head plain, in the compute dtype."""
    dtype = DecoderSettings(device="cuda").torch_dtype()  # bf16 (fp16 on GPUs without bf16)
    named = itertools.chain(decoder.named_parameters(), decoder.named_buffers())
    elsewhere = [name for name, tensor in named if tensor.device.type != "cuda"]
    assert not elsewhere, f"decoder tensors left off the device: {elsewhere[:5]}"
    linears: dict[str, Any] = {
        n: m for n, m in decoder.get_decoder().layers.named_modules() if isinstance(m, nn.Linear)
    }
    assert {type(m).__name__ for m in linears.values()} == {LAYER_TYPES[quantization]}
    for name, module in linears.items():
        if quantization == "4bit":
            assert module.compute_dtype == dtype, f"{name} computes in {module.compute_dtype}"
            assert module.weight.quant_type == "nf4", name
            assert module.weight.dtype == torch.uint8 and module.weight.quant_state is not None, name
        elif quantization == "8bit":
            assert module.weight.dtype == torch.int8, f"{name} holds {module.weight.dtype} weights"
        else:
            assert module.weight.dtype == dtype, name
    head = decoder.get_output_embeddings()
    assert type(head) is nn.Linear, f"the LM head must not be quantized, got {type(head).__name__}"
    assert head.weight.dtype == dtype and head.weight.device.type == "cuda"


@pytest.mark.parametrize("quantization", ["none", "4bit", "8bit"])
def test_decoder_and_heads_load_onto_the_device(
    quantization: str, tiny_decoder_dir: Path, cuda_cola_dir: Path, cuda_model: CoLAModel, check_state, request
) -> None:
    if quantization != "none":
        request.getfixturevalue("bnb")
    settings = DecoderSettings(quantization=quantization, device="cuda")  # type: ignore[arg-type]
    decoder, _ = load_decoder(str(tiny_decoder_dir), settings)
    _decoder_checks(decoder, quantization)
    del decoder

    model = CoLAModel.from_pretrained(str(cuda_cola_dir), settings=settings)
    _decoder_checks(model.decoder, quantization)
    dtype = settings.torch_dtype()
    assert model.device.type == "cuda" and model.head_dtype == dtype
    for part_name, part in model.heads().items():
        misplaced = [n for n, p in part.named_parameters() if p.device != model.device or p.dtype != dtype]
        assert not misplaced, f"{part_name}: parameters not on {model.device} in {dtype}: {misplaced[:5]}"

    # decoding runs there (CPU ids and actions in, as agents pass them), every cache on the device
    prompt = torch.tensor([model.tokenizer("Quantized decoding on the device")["input_ids"]])
    state = model.start(prompt, track_policy=True)
    check_state(state, f"{quantization} prefill")
    reference = cuda_model.start(prompt, track_policy=True)
    similarity = torch.nn.functional.cosine_similarity(state.hidden.float(), reference.hidden.float()).item()
    assert similarity > 0.9, (
        f"{quantization} decoder drifted too far from the unquantized one (cosine {similarity:.3f})"
    )
    for action in (1, 7, 30):
        token, state = model.step(state, torch.tensor([action]))
        assert token.device.type == "cuda" and 0 <= int(token) < model.decoder.config.vocab_size
    check_state(state, f"{quantization} after 3 steps")
