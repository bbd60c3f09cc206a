"""One model per process: every env made with the same model reference shares it.

``gym.make`` builds a new env object each call; loading a decoder each time would cost
seconds and a model copy in memory. Envs ask this registry instead and keep only the
reference, so they pickle small and never deep-copy the model.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from cola_gym.model.decoders import DecoderSettings

if TYPE_CHECKING:
    from cola_gym.model.cola import CoLAModel

ModelKey = tuple[str | None, DecoderSettings]

_MODELS: dict[ModelKey, CoLAModel] = {}
_LOCK = threading.Lock()


def model_key(model: str | os.PathLike[str] | None, settings: DecoderSettings) -> ModelKey:
    """The registry key of a model reference (``None`` is the default model)."""
    return (None if model is None else str(model), settings)


def shared_model(model: str | os.PathLike[str] | None = None, settings: DecoderSettings | None = None) -> CoLAModel:
    """The process-wide :class:`CoLAModel` for ``model`` (loaded on first use).

    Args:
        model: a CoLA checkpoint directory, a plain decoder (directory or Hub id), or
            ``None`` for the default model.
        settings: device, dtype and quantization of the decoder.
    """
    from cola_gym.model.cola import CoLAModel

    key = model_key(model, settings or DecoderSettings())
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = CoLAModel.from_pretrained(key[0], settings=key[1])
        return _MODELS[key]


def register_shared_model(model: CoLAModel, settings: DecoderSettings | None = None) -> str | None:
    """Makes an in-memory model reachable by its ``name_or_path``; returns that reference.

    Returns ``None`` for a model that was not loaded from a path (it cannot be re-found
    after pickling).
    """
    if model.name_or_path is None:
        return None
    with _LOCK:
        _MODELS.setdefault(model_key(model.name_or_path, settings or DecoderSettings()), model)
    return model.name_or_path
