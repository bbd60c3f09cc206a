"""Simple latent-action agents: uniform random, and the CoLA policy prior."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from cola_gym.envs.base import LatentActionEnv
from cola_gym.model.generation import sample_top_k


class RandomAgent:
    """Uniformly random latent codes (among the allowed ones)."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, env: gym.Env) -> int:
        """The next action for ``env``."""
        allowed = np.flatnonzero(_unwrap(env).action_masks())
        return int(self.rng.choice(allowed))


class PolicyPriorAgent:
    """Samples a_t from the CoLA policy pi(a_t | x_1..t) with top-k and temperature.

    The release samples with top-k 40 of 64 codes at temperature 1; ``greedy`` takes the
    argmax. Needs an env made with ``track_policy=True``.
    """

    def __init__(
        self, top_k: int = 40, temperature: float = 1.0, greedy: bool = False, seed: int | None = None
    ) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 (use greedy=True for argmax), got {temperature}")
        self.top_k, self.temperature, self.greedy = top_k, temperature, greedy
        self.generator = torch.Generator().manual_seed(0 if seed is None else seed)

    def act(self, env: gym.Env) -> int:
        """The next action for ``env``."""
        base = _unwrap(env)
        state = base.decoding_state
        if state is None or state.policy_logits is None:
            raise ValueError("PolicyPriorAgent needs an env made with track_policy=True, after reset().")
        logits = state.policy_logits[0].float().cpu()
        logits = logits.masked_fill(~torch.from_numpy(base.action_masks()), float("-inf"))
        if self.greedy:
            return int(logits.argmax())
        return int(sample_top_k(logits[None], self.top_k, self.temperature, self.generator)[0])


def _unwrap(env: gym.Env) -> LatentActionEnv:
    base = env.unwrapped
    if not isinstance(base, LatentActionEnv):
        raise TypeError(f"expected a cola-gym env, got {type(base).__name__}")
    return base


class PriorAgent:
    """The CoLA policy prior as an SB3-style agent: reads the prior from ``hidden+prior`` observations.

    ``predict`` takes the argmax (``deterministic=True``) or samples the top-k codes; it
    works on batches, so the shared evaluation code runs it like any SB3 model.
    """

    def __init__(self, num_actions: int, top_k: int = 40, temperature: float = 1.0, seed: int | None = None) -> None:
        self.num_actions = num_actions
        self.top_k, self.temperature = top_k, temperature
        self.generator = torch.Generator().manual_seed(0 if seed is None else seed)

    def predict(
        self, observation: np.ndarray, state: object = None, episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:  # fmt: skip
        """Actions ``[N]`` for observations ``[N, d + K]`` (or one observation ``[d + K]``)."""
        log_probs = torch.as_tensor(np.atleast_2d(observation)[:, -self.num_actions :], dtype=torch.float32)
        if deterministic:
            actions = log_probs.argmax(-1)
        else:
            actions = sample_top_k(log_probs, self.top_k, self.temperature, self.generator)
        actions_np = actions.numpy()
        return (actions_np if np.ndim(observation) > 1 else actions_np[0]), None
