"""The CoLA model: latent-action heads around a frozen Llama-family decoder."""

from cola_gym.model.cola import CoLAModel
from cola_gym.model.config import CoLAConfig
from cola_gym.model.decoders import EMBEDDED_DECODER, DecoderSettings, load_decoder
from cola_gym.model.decoding import DecodingState
from cola_gym.model.shared import shared_model

__all__ = [
    "EMBEDDED_DECODER",
    "CoLAConfig",
    "CoLAModel",
    "DecoderSettings",
    "DecodingState",
    "load_decoder",
    "shared_model",
]
