"""cola-gym: Gymnasium environments whose actions are the latent codes of a CoLA model.

``import cola_gym`` registers the env ids (``CoLA-Math500-v0``, ...) without importing
torch; ``gym.make`` loads the model once per process.
"""

from cola_gym.registration import register_envs

__version__ = "0.1.0"

ENV_IDS: tuple[str, ...] = tuple(register_envs())
"""Every env id cola-gym registers."""

__all__ = ["ENV_IDS", "__version__"]
