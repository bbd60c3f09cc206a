"""cola-agents: agents and tools that act in cola-gym envs."""

from cola_agents.agents import Agent, BoundAgent, PlanningAgent, PriorAgent, RandomAgent

__all__ = ["Agent", "BoundAgent", "PlanningAgent", "PriorAgent", "RandomAgent"]
