"""Saving and loading CoLA checkpoints: JSON config + safetensors, never pickle.

A checkpoint directory holds::

    cola_config.json        format version, CoLAConfig, decoder reference and fingerprint
    cola_heads.safetensors  the learned parts (IDM, codebook, world-model merge, policy)
    decoder/                optional: the decoder itself (Hugging Face format + tokenizer)
    decoder_adapter/        optional: LoRA adapters of a fine-tuned decoder (peft format)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from cola_gym.errors import CheckpointError, ModelNotFoundError
from cola_gym.model.config import CoLAConfig
from cola_gym.model.decoders import EMBEDDED_DECODER, DecoderSettings, load_decoder
from cola_gym.paths import looks_like_path


class CheckpointedModel(Protocol):
    """What saving and loading need of a CoLA model (:class:`~cola_gym.model.cola.CoLAModel` is one).

    A protocol rather than an import: ``cola_gym.model.cola`` imports this module, never the reverse.
    """

    config: CoLAConfig
    decoder: Any
    tokenizer: Any
    decoder_name_or_path: str | None
    decoder_adapter: Path | None
    name_or_path: str | None

    def __init__(
        self, config: CoLAConfig, decoder: Any, tokenizer: Any, decoder_name_or_path: str | None = None
    ) -> None: ...

    @classmethod
    def from_decoder(
        cls: type[ModelT],
        decoder: str | os.PathLike[str] | None = None,
        config: CoLAConfig | None = None,
        settings: DecoderSettings | None = None,
    ) -> ModelT: ...

    def heads(self) -> dict[str, torch.nn.Module]: ...


ModelT = TypeVar("ModelT", bound=CheckpointedModel)

CONFIG_FILE = "cola_config.json"
HEADS_FILE = "cola_heads.safetensors"
DECODER_DIR = "decoder"
ADAPTER_DIR = "decoder_adapter"
FORMAT_VERSION = 1

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "pretrained" / "smollm2-135m-instruct"
"""The default model: CoLA heads trained for the embedded decoder, shipped inside the package."""
_FINGERPRINT_KEYS = ("model_type", "hidden_size", "vocab_size", "num_hidden_layers")


def decoder_architecture(decoder_config: Any) -> dict[str, Any]:
    """The decoder properties the heads depend on."""
    return {key: getattr(decoder_config, key, None) for key in _FINGERPRINT_KEYS}


def save_cola(
    model: CheckpointedModel,
    path: str | os.PathLike[str],
    store_decoder: bool = False,
    dtype: torch.dtype | None = None,
) -> None:
    """Writes ``model`` to the directory ``path`` (created if needed); files are replaced atomically.

    Args:
        model: the model to save.
        path: target directory.
        store_decoder: also write the decoder under ``path/decoder`` so the checkpoint is
            self-contained; otherwise only a reference (path or Hub id) is recorded. A
            decoder with LoRA adapters (being trained, or merged in from the checkpoint it
            was loaded from) always stores just the adapters.
        dtype: store the head (and adapter, or stored decoder) weights in this dtype (e.g.
            ``torch.bfloat16`` halves the file); they are cast back to the model's dtype on loading.
    """
    from safetensors.torch import save_file

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in [*directory.glob(f".{HEADS_FILE}.*"), *directory.glob(f".{CONFIG_FILE}.*")]:
        leftover.unlink(missing_ok=True)  # left by a save that was killed half-way
    adapter = None
    if hasattr(model.decoder, "peft_config") or model.decoder_adapter is not None:
        reference = model.decoder_name_or_path or EMBEDDED_DECODER
        if looks_like_path(reference):
            reference = str(Path(reference).expanduser().resolve())
        _save_adapter(model, directory / ADAPTER_DIR, dtype, reference)
        adapter = ADAPTER_DIR
    elif store_decoder:
        if getattr(model.decoder, "is_quantized", False):
            raise CheckpointError(
                "A quantized decoder cannot be stored in a CoLA checkpoint; save with store_decoder=False "
                "(the checkpoint then refers to the decoder by path or Hub id)."
            )
        weights = None if dtype is None else {k: v.detach().to(dtype) for k, v in model.decoder.state_dict().items()}
        model.decoder.save_pretrained(directory / DECODER_DIR, state_dict=weights)
        model.tokenizer.save_pretrained(directory / DECODER_DIR)
        reference = DECODER_DIR
    else:
        reference = model.decoder_name_or_path or EMBEDDED_DECODER
        if looks_like_path(reference):
            reference = str(Path(reference).expanduser().resolve())
    tensors = {
        f"{name}.{key}": value.detach().to("cpu", dtype or value.dtype).contiguous()
        for name, part in model.heads().items()
        for key, value in part.state_dict().items()
    }
    decoder_entry: dict[str, Any] = {"name_or_path": reference, "stored": store_decoder and adapter is None}
    if adapter is not None:
        decoder_entry["adapter"] = adapter
    config = {
        "format": "cola-gym",
        "format_version": FORMAT_VERSION,
        "cola_config": model.config.to_dict(),
        "decoder": decoder_entry,
        "decoder_fingerprint": decoder_architecture(model.decoder.config),
    }
    _atomic_write(directory / HEADS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    _atomic_write(directory / CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps(config, indent=2)))


def load_cola(
    model_class: type[ModelT],
    name_or_path: str | os.PathLike[str] | None,
    decoder: str | os.PathLike[str] | None = None,
    settings: DecoderSettings | None = None,
) -> ModelT:
    """Loads a CoLA checkpoint, or puts fresh heads on a plain decoder (see ``CoLAModel.from_pretrained``).

    ``model_class`` is passed in (rather than imported): see :class:`CheckpointedModel`.
    """
    if name_or_path is None and decoder is None and (DEFAULT_MODEL_DIR / CONFIG_FILE).is_file():
        model = load_cola(model_class, DEFAULT_MODEL_DIR, settings=settings)
        model.name_or_path = None
        return model
    if name_or_path is None or str(name_or_path) == EMBEDDED_DECODER:
        model = model_class.from_decoder(decoder, settings=settings)
        model.name_or_path = None
        return model
    name = str(name_or_path)
    directory = Path(name).expanduser()
    if looks_like_path(name) and not directory.is_dir():
        raise ModelNotFoundError(f"No model directory at {directory} (from {name!r}); check the path.")
    if not (directory / CONFIG_FILE).is_file():
        # A plain decoder (local directory or Hub id): fresh, untrained heads.
        model = model_class.from_decoder(decoder or name, settings=settings)
        model.name_or_path = name
        return model
    meta = _read_config(directory)
    reference = decoder
    if reference is None:
        recorded = meta["decoder"]["name_or_path"]
        reference = directory / recorded if meta["decoder"].get("stored") else recorded
    decoder_model, tokenizer = load_decoder(reference, settings)
    _check_fingerprint(directory, meta["decoder_fingerprint"], decoder_model.config)
    adapter_dir = None
    if meta["decoder"].get("adapter") and decoder is None:
        adapter_dir = directory / meta["decoder"]["adapter"]
        decoder_model = _apply_adapter(decoder_model, adapter_dir)
    config = meta["cola_config"]
    model = model_class(config, decoder_model, tokenizer, decoder_name_or_path=str(reference))
    model.decoder_adapter = adapter_dir
    load_heads(model, directory / HEADS_FILE)
    model.name_or_path = str(directory.resolve())
    return model


def _apply_adapter(decoder: Any, adapter_dir: Path) -> Any:
    """The decoder with the checkpoint's LoRA adapters merged in (frozen, eval mode)."""
    try:
        from peft import PeftModel
    except ImportError as err:
        raise CheckpointError(f"{adapter_dir} holds LoRA adapters; loading them needs peft (pip install peft)") from err
    if not (adapter_dir / "adapter_config.json").is_file():
        raise CheckpointError(f"{adapter_dir} is missing or has no adapter_config.json; the checkpoint is incomplete.")
    merged = PeftModel.from_pretrained(decoder, str(adapter_dir)).merge_and_unload()
    merged.requires_grad_(False)
    merged.eval()
    return merged


def _save_adapter(model: CheckpointedModel, target: Path, dtype: torch.dtype | None, decoder_reference: str) -> None:
    """Writes the decoder's LoRA adapters: the ones being trained, else the merged-in ones.

    The adapter config names the decoder as the checkpoint does (not this machine's cache
    path); peft's empty model-card template is left out (the checkpoint has its own card).
    """
    if hasattr(model.decoder, "peft_config"):
        model.decoder.save_pretrained(target)
    else:
        assert model.decoder_adapter is not None
        source = Path(model.decoder_adapter)
        if source.resolve() != target.resolve():
            target.mkdir(parents=True, exist_ok=True)
            for name in ("adapter_config.json", "adapter_model.safetensors"):
                shutil.copyfile(source / name, target / name)
    (target / "README.md").unlink(missing_ok=True)
    config_path = target / "adapter_config.json"
    adapter_config = json.loads(config_path.read_text())
    adapter_config["base_model_name_or_path"] = decoder_reference
    _atomic_write(config_path, lambda tmp: tmp.write_text(json.dumps(adapter_config, indent=2)))
    if dtype is not None:
        from safetensors.torch import load_file, save_file

        for weights in target.glob("*.safetensors"):
            tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
            _atomic_write(weights, lambda tmp, t=tensors: save_file(t, str(tmp), metadata={"format": "pt"}))


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{path} is not readable JSON ({err}); the checkpoint is corrupt, save it again."
        ) from err
    if not isinstance(meta, dict) or meta.get("format") != "cola-gym":
        raise CheckpointError(f"{path} is not a cola-gym checkpoint config (no 'format': 'cola-gym').")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {meta.get('format_version')!r}; this cola-gym reads version {FORMAT_VERSION}."
        )
    try:
        meta["cola_config"] = CoLAConfig.from_dict(meta["cola_config"])
        if not meta["cola_config"].is_resolved:
            raise ValueError("some shapes are missing")
        str(meta["decoder"]["name_or_path"])
        dict(meta["decoder_fingerprint"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} has an invalid entry: {err}") from err
    return meta


def _check_fingerprint(directory: Path, expected: dict[str, Any], decoder_config: Any) -> None:
    actual = decoder_architecture(decoder_config)
    diffs = [
        f"{k}: checkpoint {expected.get(k)!r} vs decoder {actual[k]!r}"
        for k in ("hidden_size", "vocab_size")
        if expected.get(k) != actual[k]
    ]
    if diffs:
        raise CheckpointError(
            f"The CoLA heads in {directory} were built for another decoder ({'; '.join(diffs)}). "
            "Pass the decoder they were trained on (decoder=...)."
        )


def load_heads(model: CheckpointedModel, path: Path) -> None:
    """Loads head weights from a safetensors file into ``model`` (checked: names, shapes, finite values)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint has a config but no head weights.")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err}); the checkpoint is corrupt.") from err
    expected = {
        f"{name}.{key}": value for name, part in model.heads().items() for key, value in part.state_dict().items()
    }
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong_shape:
        details = "; ".join(
            f"{label}: {keys[:5]}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
            if keys
        )
        raise CheckpointError(f"{path} does not match its config ({details}).")
    broken = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if broken:
        raise CheckpointError(
            f"{path} holds NaN or infinite weights in {', '.join(broken[:5])}{' ...' if len(broken) > 5 else ''}: "
            "the training run that wrote it diverged; load an earlier checkpoint or train again."
        )
    with torch.no_grad():
        for key, value in expected.items():
            value.copy_(tensors[key].to(dtype=value.dtype))


def _atomic_write(target: Path, write: Any) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(0o644)  # mkstemp makes the file private; a checkpoint is meant to be shared
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
