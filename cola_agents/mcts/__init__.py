"""MCTS-Q over latent actions: search core, batched CoLA search model, planning agents."""

from cola_agents.mcts.agent import BestOfNAgent, MCTSAgent, PlanningAgentBase, sb3_policy_prior
from cola_agents.mcts.config import MCTSConfig
from cola_agents.mcts.env_model import CoLASearchModel
from cola_agents.mcts.search import SearchResult, search

__all__ = [
    "BestOfNAgent",
    "CoLASearchModel",
    "MCTSAgent",
    "MCTSConfig",
    "PlanningAgentBase",
    "SearchResult",
    "sb3_policy_prior",
    "search",
]
