"""Decoder loading: the embedded default, bitsandbytes quantization on CPU, family checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cola_gym.errors import ModelNotFoundError, UnsupportedDecoderError
from cola_gym.model import EMBEDDED_DECODER, CoLAModel, DecoderSettings, load_decoder
from cola_gym.model.decoders import _choose_quantization, check_llama_family, count_parameters


def test_the_embedded_default_is_smollm2_and_answers_sensibly(default_decoder_dir: Path) -> None:
    model, tokenizer = load_decoder(EMBEDDED_DECODER)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.vocab_size) == (576, 30, 49152)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "5" in tokenizer.decode(out[0, prompt["input_ids"].shape[1] :])
    assert load_decoder(None)[0].config.hidden_size == 576  # None means the same default


@pytest.mark.parametrize(("quantization", "layer_type"), [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_bitsandbytes_quantized_decoder_runs_on_cpu(
    tiny_cola_dir: Path, tiny_cola: CoLAModel, quantization: str, layer_type: str
) -> None:
    model = CoLAModel.from_pretrained(tiny_cola_dir, settings=DecoderSettings(quantization=quantization))  # type: ignore[arg-type]
    assert type(model.decoder.model.layers[0].self_attn.q_proj).__name__ == layer_type
    prompt = torch.tensor([model.tokenizer("Quantized decoding works")["input_ids"]])
    state, reference = model.start(prompt, track_policy=True), tiny_cola.start(prompt, track_policy=True)
    for action in (1, 7, 30):
        _, state = model.step(state, torch.tensor([action]))
        _, reference = tiny_cola.step(reference, torch.tensor([action]))
    similarity = torch.nn.functional.cosine_similarity(state.hidden, reference.hidden).item()
    assert similarity > 0.9, f"{quantization} decoder drifted too far from fp32 (cosine {similarity:.3f})"


def test_auto_quantization_is_4bit_only_for_large_decoders_that_crowd_a_gpu(
    tiny_decoder_dir: Path, tmp_path: Path
) -> None:
    from transformers import LlamaConfig

    LlamaConfig(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=22, num_attention_heads=32, vocab_size=32000
    ).save_pretrained(tmp_path)
    parameters = count_parameters(str(tmp_path))
    assert parameters > 1_000_000_000
    cuda = torch.device("cuda")
    assert _choose_quantization(str(tmp_path), "auto", cuda, free_bytes=3 * parameters) == "4bit"  # tight
    assert _choose_quantization(str(tmp_path), "auto", cuda, free_bytes=40 * parameters) == "none"  # bf16 fits
    assert _choose_quantization(str(tmp_path), "auto", torch.device("cpu")) == "none"
    assert _choose_quantization(str(tiny_decoder_dir), "auto", cuda) == "none"
    assert _choose_quantization(str(tiny_decoder_dir), "8bit", torch.device("cpu")) == "8bit"


def test_non_llama_models_are_refused() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100))
    with pytest.raises(UnsupportedDecoderError, match="not a Llama-family causal LM"):
        check_llama_family(gpt2)


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="quantization must be one of"):
        DecoderSettings(quantization="3bit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device must be"):
        DecoderSettings(device="tpu")
    assert DecoderSettings(device="cpu").torch_dtype() == torch.float32


def test_cola_device_picks_the_auto_device_and_gpus_without_bf16_get_fp16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLA_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert DecoderSettings().torch_device() == torch.device("cpu")
    monkeypatch.setenv("COLA_DEVICE", "cuda:1")
    assert DecoderSettings().torch_device() == torch.device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert DecoderSettings().torch_dtype() == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert DecoderSettings().torch_dtype() == torch.bfloat16
    monkeypatch.setenv("COLA_DEVICE", "gpu")
    with pytest.raises(ValueError, match=r"\$COLA_DEVICE must be"):
        DecoderSettings().torch_device()


def test_a_missing_hub_model_names_the_token_for_gated_models(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network: a cache miss at once
    with pytest.raises(ModelNotFoundError, match="HF_TOKEN"):
        load_decoder("meta-llama/Llama-3.2-1B", DecoderSettings(device="cpu"))
