"""The policy GRPO trains (:class:`~cola_agents.algorithms.grpo.GRPO`'s ``"MlpPolicy"``).

It reads the observation as the env lays it out (:class:`~cola_gym.envs.observation.ObservationLayout`,
published with the observation space): when the observation carries the prior, the policy's
logits start as the prior's log-probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.utils import FloatSchedule
from torch import nn
from torch.nn import functional as F

from cola_gym.envs.observation import ObservationLayout


class GroupPolicy(BasePolicy):
    """The actor GRPO trains: an MLP over the observation whose output is added to the prior.

    With ``observation="hidden+prior"`` envs the logits are ``prior log-probs + action_net(...)``
    and ``action_net`` starts at zero, so the untrained agent *is* the CoLA policy (for token
    twins: the decoder's own next-token distribution). Without the prior it is a plain MLP
    policy, as SB3's ``MlpPolicy``.

    Args:
        observation_space: the env's (its :class:`~cola_gym.envs.observation.ObservationLayout`
            says whether it carries the prior).
        action_space: ``Discrete(K)`` (or ``Discrete(V)`` for token twins).
        lr_schedule: learning-rate schedule of the optimizer.
        net_arch: hidden layer sizes.
        activation_fn: activation between them.
        use_prior: ``"auto"`` (use the prior when the observation carries one), ``True`` or ``False``.
        optimizer_class: torch optimizer.
        optimizer_kwargs: its extra arguments.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: Sequence[int] = (64, 64),
        activation_fn: type[nn.Module] = nn.Tanh,
        use_prior: bool | str = "auto",
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise TypeError(f"GRPO needs a Discrete action space (latent codes or tokens), got {action_space}")
        super().__init__(observation_space, action_space, optimizer_class=optimizer_class,
                         optimizer_kwargs=optimizer_kwargs, **kwargs)  # fmt: skip
        self.num_actions = int(action_space.n)
        self.layout = ObservationLayout.of(observation_space)
        if self.layout.prior not in (0, self.num_actions):
            raise ValueError(f"the observation's prior has {self.layout.prior} entries for {self.num_actions} actions")
        found = self.layout.prior > 0
        if use_prior == "auto":
            use_prior = found
        elif use_prior and not found:
            raise ValueError("use_prior=True needs observation='hidden+prior': the observation must end with the prior")
        self.use_prior = bool(use_prior)
        self.net_arch = list(net_arch)
        self.activation_fn = activation_fn
        layers: list[nn.Module] = []
        width = int(np.prod(observation_space.shape))  # type: ignore[arg-type]
        for size in self.net_arch:
            layers += [nn.Linear(width, size), activation_fn()]
            width = size
        self.mlp = nn.Sequential(*layers)
        self.action_net = nn.Linear(width, self.num_actions)
        if self.use_prior:
            nn.init.zeros_(self.action_net.weight)
            nn.init.zeros_(self.action_net.bias)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(net_arch=self.net_arch, activation_fn=self.activation_fn, use_prior=self.use_prior,
                    lr_schedule=FloatSchedule(0.0), optimizer_class=self.optimizer_class,
                    optimizer_kwargs=self.optimizer_kwargs)  # fmt: skip
        return data

    def prior_log_probs(self, observation: torch.Tensor) -> torch.Tensor | None:
        """The prior's log-probabilities ``[N, n]`` read from observations ``[N, size]``, or ``None``."""
        return self.layout.split(observation)[1] if self.use_prior else None

    def logits(self, observation: torch.Tensor) -> torch.Tensor:
        """Action logits ``[N, n]`` (``-inf``-free: the env clips the prior at the layout's floor)."""
        logits = self.action_net(self.mlp(observation.flatten(1).float()))
        prior = self.prior_log_probs(observation)
        return logits if prior is None else logits + prior.float()

    def forward(self, observation: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions ``[N]`` and their log-probabilities."""
        dist = torch.distributions.Categorical(logits=self.logits(observation))
        actions = dist.probs.argmax(-1) if deterministic else dist.sample()
        return actions, dist.log_prob(actions)

    def _predict(self, observation: torch.Tensor, deterministic: bool = False) -> torch.Tensor:  # type: ignore[override]
        return self(observation, deterministic)[0]

    def evaluate_actions(self, observation: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(log_prob [N], entropy [N], log_probs_all [N, n])`` of ``actions``."""
        log_probs = F.log_softmax(self.logits(observation), dim=-1)
        taken = log_probs.gather(-1, actions.long().view(-1, 1)).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return taken, entropy, log_probs
