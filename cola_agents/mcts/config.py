"""MCTS-Q hyperparameters, spelled out, with the paper's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LeafValue = Literal["q_network", "oracle"]
RolloutPolicy = Literal["sample", "greedy"]
LeafQ = Literal["last", "path_mean"]


@dataclass(frozen=True)
class MCTSConfig:
    """Tree search over latent actions (CoLA's MCTS-Q, Jia et al., ICML 2025, and the release).

    Attributes:
        num_simulations: expansions per search (the paper: 64).
        exploration_constant: c of PUCT = V(n) + c * P(n) * sqrt(N(parent)) / (N(n) + 1).
        root_width: children of the root: its top-b untried actions under the prior (16).
        node_width: children of every other node (2).
        discount: gamma of the backup Q(n, a) = (R_child - R_n) + gamma * V_child and of the
            Q-network's TD check (0.99).
        macro_td_threshold: a new node becomes a macro step when the Q-network's one-step
            TD error (Q(s, a) - gamma * max Q(s', .))^2 is below this (0.01).
        macro_max_tokens: tokens a macro step adds at most (64).
        rollout_max_tokens: tokens of a leaf evaluation's policy rollout at most (1024).
        max_depth_tokens: nodes deeper than this (tokens below the root) are not expanded (2048).
        leaf_value: how a rollout is scored: ``"q_network"`` (the Q-network's value of the
            rollout's last step: honest test-time search) or ``"oracle"`` (the env's own
            reward against the reference answer: for training data and upper bounds).
        leaf_q: which Q-network value scores a rollout: ``"last"`` (Q of its last action, the
            paper's) or ``"path_mean"`` (the mean Q of every action from the search's root to the
            rollout's end: each step's Q is a noisy estimate of the same outcome, and their mean
            ranks one problem's answers better on micro Countdown).
        rollout_policy: ``"sample"`` (top-k, temperature, as the release) or ``"greedy"``.
        rollout_top_k: top-k of sampled rollouts and macro steps (40).
        rollout_temperature: temperature of sampled rollouts and macro steps (1.0).
        merge_aliases: try one action per token a node's actions write (latent codes are
            many-to-one onto tokens: on micro Countdown the 64 codes write 3-5 distinct tokens
            at a prompt, so 16 root children are mostly copies of the same few subtrees); the
            child's P(n) is then the probability of its token (its action's and its aliases').
            ``False`` is the release's search.
        reuse_greedy_rollouts: with greedy rollouts, a new node on the path of its parent's
            finished rollout takes the rest of that rollout as its own instead of decoding it
            again (greedy decoding from the same state writes the same tokens): the same tree,
            with the rollout's tokens spent once. With ``False`` each node rolls out afresh and
            pays for it (the release's accounting).
        stop_on_finished_answer: end a search as soon as an expansion finishes an answer.
        parallel_expansions: nodes one tree expands per wave, batched in one decoder step
            (1 = the paper's sequential search; more uses virtual visits to diversify). Under a
            ``token_budget`` a wave holds only as many as the budget left pays for.
        token_budget: decoder tokens (expansions + rollouts) a search may spend; ``None`` = no cap.
            The search stops once it is spent, past it by less than one simulation's tokens.
        seed: seed of the rollouts' sampling.
    """

    num_simulations: int = 64
    exploration_constant: float = 0.7
    root_width: int = 16
    node_width: int = 2
    discount: float = 0.99
    macro_td_threshold: float = 0.01
    macro_max_tokens: int = 64
    rollout_max_tokens: int = 1024
    max_depth_tokens: int = 2048
    leaf_value: LeafValue = "q_network"
    leaf_q: LeafQ = "last"
    rollout_policy: RolloutPolicy = "sample"
    rollout_top_k: int = 40
    rollout_temperature: float = 1.0
    merge_aliases: bool = True
    reuse_greedy_rollouts: bool = True
    stop_on_finished_answer: bool = True
    parallel_expansions: int = 1
    token_budget: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_simulations", "root_width", "node_width", "rollout_top_k", "parallel_expansions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("macro_max_tokens", "rollout_max_tokens", "max_depth_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1], got {self.discount}")
        if self.exploration_constant < 0 or self.macro_td_threshold < 0:
            raise ValueError("exploration_constant and macro_td_threshold must be >= 0")
        if self.leaf_value not in ("q_network", "oracle"):
            raise ValueError(f"leaf_value must be 'q_network' or 'oracle', got {self.leaf_value!r}")
        if self.leaf_q not in ("last", "path_mean"):
            raise ValueError(f"leaf_q must be 'last' or 'path_mean', got {self.leaf_q!r}")
        if self.rollout_policy not in ("sample", "greedy"):
            raise ValueError(f"rollout_policy must be 'sample' or 'greedy', got {self.rollout_policy!r}")
        if self.rollout_temperature <= 0:
            raise ValueError(f"rollout_temperature must be > 0, got {self.rollout_temperature}")
        if self.token_budget is not None and self.token_budget < 1:
            raise ValueError(f"token_budget must be >= 1 or None, got {self.token_budget}")
