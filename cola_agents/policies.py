"""SB3 policies that start from the CoLA prior (the behaviour-cloned latent policy).

RL from uniformly random latent actions is hopeless: almost every random code sequence
is gibberish. These policies read the prior's log-probabilities from the observation
(make the env with ``observation="hidden+prior"``) and add them to their action logits;
the learned part of the logits starts at exactly zero, so before training the agent *is*
the BC policy (its greedy completions equal the BC policy's), and training moves it away
only where the reward says so. Pair with ``prior_kl_coef`` on the env and the same
``ent_coef`` in the algorithm to keep it close to the prior (see ``LatentActionEnv``).

    from stable_baselines3 import PPO
    from cola_agents.policies import CoLAPriorPolicy
    from cola_agents.sb3 import make_sb3_env

    env = make_sb3_env("CoLA-GSM8K-Train-v0", n_envs=16, observation="hidden+prior")
    PPO(CoLAPriorPolicy, env).learn(10_000)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

from cola_gym.envs.observation import ObservationLayout


class PriorRecordingExtractor(FlattenExtractor):
    """Flattens the observation and remembers its prior, split as the space's layout says.

    Args:
        observation_space: an env's space whose :class:`~cola_gym.envs.observation.ObservationLayout`
            carries the prior.
    """

    def __init__(self, observation_space: gym.spaces.Box) -> None:
        super().__init__(observation_space)
        self.layout = ObservationLayout.of(observation_space)
        self.prior_log_probs: torch.Tensor | None = None

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """The flat features ``[N, size]``; keeps the prior ``[N, K]`` of observations ``[N, size]``."""
        _, self.prior_log_probs = self.layout.split(observations)
        return super().forward(observations)


class _PriorLogits:
    """Action logits = prior log-probabilities (the observation's prior entries) + a residual.

    Every SB3 actor-critic path runs the policy's features extractor on the observation
    before it builds the action distribution; :class:`PriorRecordingExtractor` keeps the
    prior from that call, and it is added when the distribution is built.
    """

    @staticmethod
    def _with_prior_extractor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        action_space = kwargs.get("action_space", args[1] if len(args) > 1 else None)
        if not isinstance(action_space, gym.spaces.Discrete):
            raise TypeError("the CoLA prior policies need a Discrete action space (latent codes)")
        observation_space = kwargs.get("observation_space", args[0] if args else None)
        prior = ObservationLayout.of(observation_space).prior if isinstance(observation_space, gym.spaces.Box) else 0
        if prior == 0:
            raise ValueError("make the env with observation='hidden+prior': the observation must end with the prior")
        if prior != action_space.n:
            raise ValueError(f"the observation's prior has {prior} entries for {action_space.n} actions")
        return {**kwargs, "features_extractor_class": PriorRecordingExtractor, "features_extractor_kwargs": {}}

    def _zero_residual(self) -> None:
        action_net: nn.Module = getattr(self, "action_net")  # noqa: B009 - set by the SB3 base class
        with torch.no_grad():
            for param in action_net.parameters():
                param.zero_()

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor) -> Any:
        extractor: PriorRecordingExtractor = getattr(self, "pi_features_extractor")  # noqa: B009
        assert extractor.prior_log_probs is not None, "the features extractor runs before the action distribution"
        logits = getattr(self, "action_net")(latent_pi) + extractor.prior_log_probs  # noqa: B009
        return getattr(self, "action_dist").proba_distribution(action_logits=logits)  # noqa: B009


class CoLAPriorPolicy(_PriorLogits, ActorCriticPolicy):
    """``MlpPolicy`` for PPO, A2C and TRPO that starts as the CoLA prior."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **self._with_prior_extractor(args, kwargs))
        self._zero_residual()


class CoLAMaskablePriorPolicy(_PriorLogits, MaskableActorCriticPolicy):
    """MaskablePPO's ``MlpPolicy`` that starts as the CoLA prior."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **self._with_prior_extractor(args, kwargs))
        self._zero_residual()


class CoLARecurrentPriorPolicy(_PriorLogits, RecurrentActorCriticPolicy):
    """RecurrentPPO's ``MlpLstmPolicy`` that starts as the CoLA prior."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **self._with_prior_extractor(args, kwargs))
        self._zero_residual()
