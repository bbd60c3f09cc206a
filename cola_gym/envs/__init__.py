"""Latent-action environments: the base env and the tasks built on it."""

from cola_gym.envs.base import EnvSnapshot, EpisodeText, LatentActionEnv, TurnOutcome
from cola_gym.envs.math import MathEnv

__all__ = ["EnvSnapshot", "EpisodeText", "LatentActionEnv", "MathEnv", "TurnOutcome"]
