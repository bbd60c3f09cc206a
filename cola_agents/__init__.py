"""cola-agents: agents and tools that act in cola-gym envs."""

from cola_agents.agents import PolicyPriorAgent, PriorAgent, RandomAgent

__all__ = ["PolicyPriorAgent", "PriorAgent", "RandomAgent"]
