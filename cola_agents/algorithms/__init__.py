"""RL algorithms written for cola-gym envs, used like Stable-Baselines3's (``learn``, ``save``, ``load``)."""

from cola_agents.algorithms.grpo import GRPO, GroupPolicy

__all__ = ["GRPO", "GroupPolicy"]
