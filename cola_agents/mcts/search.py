"""MCTS-Q over latent actions (Jia et al., ICML 2025, and the authors' release), batched.

One *simulation* creates one node:

1. **Selection**: among the expandable nodes (not finished, fewer children than their
   width: ``root_width`` at the root, ``node_width`` below), the one maximising
   ``PUCT = V(n) + c * P(n) * sqrt(N(parent)) / (N(n) + 1)``.
2. **Expansion**: its next untried action in the prior's order (not sampled) is decoded
   by the world model. Latent codes that write the same token from a state are aliases
   (the state after them is the same): with ``merge_aliases`` a node's actions are grouped
   by the token they write when it is first expanded (one world-model call over the K
   codes, no decoder step), one action per token is tried, and its child's ``P`` is the
   token's probability, not a copy of the same subtree per alias. If the Q-network's
   one-step TD error ``(Q(s, a) - gamma * max Q(s', .))^2`` is below ``macro_td_threshold``
   the new node is a *macro step*, extended by the rollout policy up to ``macro_max_tokens``
   tokens. ``P`` of the node is the mean policy probability of its actions (the first one's
   with its aliases').
3. **Evaluation**: a policy rollout from the new node, scored by the Q-network (honest: Q
   of its last action, or with ``leaf_q="path_mean"`` the mean Q of every action from the
   root) or by the env's reward (oracle): ``R``. With greedy rollouts, a node on its parent's
   finished rollout (its actions are that rollout's first ones) takes the rest of the rollout
   as its own: decoding it again would write the same tokens (``reuse_greedy_rollouts``).
4. **Backup**: from the new node up, ``N += 1``; a leaf's ``V = R``; an inner node's
   ``Q(n, a) = (R_child - R_n) + gamma * V_child`` and ``V(n)`` is the visit-weighted mean.

The answer is the best-valued finished node if its value beats every rollout score, else
the best rollout. Many trees (problems) advance together, and each may expand several
nodes per wave (virtual visits keep them apart): every decoder step serves all of them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cola_agents.mcts.config import MCTSConfig
from cola_agents.mcts.interface import Rollout, SearchModel, StateView, Step, policy_action

ROOT_PRIOR = 0.5  # P of the root in PUCT, as in the release (it never competes with siblings)


@dataclass(eq=False)
class Node:
    """A node: a macro step of one or more latent actions below its parent.

    Attributes:
        handle: the search model's handle of the state after the step.
        view: what the search sees of that state.
        parent: the node above (``None`` at the root).
        actions: the step's latent actions.
        depth: tokens below the root at the end of the step.
        prior: P(n) of PUCT: the mean policy probability of the step's actions.
        visits: N(n).
        value: V(n).
        leaf_score: R, the score of the rollout that evaluated this node (the Q-network's
            value or the env's reward; 0 at the root).
        tokens: the tokens the step's actions wrote, one per action.
        aliases: the parent's other actions that write the same first token (merged here).
        alias_groups: with ``merge_aliases``, each action tried from this node and its
            aliases, found when the node is first expanded (``None`` before).
        rollout: that rollout (its actions, tokens, reward; ``None`` at the root).
        children: the nodes below, by their first action.
        q: Q(n, a) of each child's first action.
        untried: allowed actions not expanded yet, in the prior's order.
        virtual_visits: visits pretended while a wave selects several nodes.
    """

    handle: Any
    view: StateView
    parent: Node | None = None
    actions: list[int] = field(default_factory=list)
    depth: int = 0
    prior: float = ROOT_PRIOR
    visits: int = 0
    value: float = 0.0
    leaf_score: float = 0.0
    tokens: list[int] = field(default_factory=list)
    aliases: list[int] = field(default_factory=list)
    alias_groups: dict[int, list[int]] | None = None
    rollout: Rollout | None = None
    children: dict[int, Node] = field(default_factory=dict)
    q: dict[int, float] = field(default_factory=dict)
    untried: list[int] = field(default_factory=list)
    virtual_visits: int = 0

    def __post_init__(self) -> None:
        if not self.untried:
            order = np.argsort(-self.view.prior, kind="stable")
            self.untried = [int(a) for a in order if self.view.allowed[a]]

    @property
    def finished(self) -> bool:
        """The episode ended inside this node's step."""
        return self.view.finished

    @property
    def token(self) -> int | None:
        """The token the step's first action wrote (``None`` at the root)."""
        return self.tokens[0] if self.tokens else None

    @property
    def path_tokens(self) -> list[int]:
        """All tokens written from the root to the end of this node's step."""
        return [token for node in self._path() for token in node.tokens]

    @property
    def rollout_actions(self) -> list[int]:
        """The latent actions of the rollout that evaluated this node."""
        return [] if self.rollout is None else self.rollout.actions

    @property
    def path_actions(self) -> list[int]:
        """All actions from the root to the end of this node's step."""
        return [action for node in self._path() for action in node.actions]

    def _path(self) -> list[Node]:
        """The nodes from the root down to this one."""
        path: list[Node] = []
        node: Node | None = self
        while node is not None:
            path.append(node)
            node = node.parent
        return path[::-1]

    def width(self, config: MCTSConfig) -> int:
        """How many children this node may have."""
        return config.root_width if self.parent is None else config.node_width

    def expandable(self, config: MCTSConfig) -> bool:
        """Not finished, room for a child, an untried allowed action left, not too deep."""
        return (not self.finished and len(self.children) < self.width(config) and bool(self.untried)
                and self.depth < config.max_depth_tokens)  # fmt: skip


@dataclass(frozen=True)
class SearchRecord:
    """What one search found and spent, without its tree.

    Attributes:
        actions: the chosen answer's latent actions from the root.
        score: its value (finished node) or rollout score.
        from_finished_node: whether the answer is a finished node (else the best rollout).
        simulations: nodes created.
        tokens: decoder tokens spent (expansions and rollouts).
    """

    actions: list[int]
    score: float
    from_finished_node: bool
    simulations: int
    tokens: int


@dataclass(frozen=True)
class SearchResult(SearchRecord):
    """The outcome of one search: its :class:`SearchRecord` and ``root``, the tree (whose nodes
    hold decoding states, KV caches included: keep :meth:`record` where many searches pile up)."""

    root: Node

    def record(self) -> SearchRecord:
        """The outcome without the tree."""
        return SearchRecord(self.actions, self.score, self.from_finished_node, self.simulations, self.tokens)


def nodes(root: Node) -> Iterator[Node]:
    """Every node, breadth first."""
    queue = deque([root])
    while queue:
        node = queue.popleft()
        yield node
        queue.extend(node.children.values())


def puct(node: Node, config: MCTSConfig) -> float:
    """V(n) + c * P(n) * sqrt(N(parent)) / (N(n) + 1), counting virtual visits."""
    parent_visits = (node.parent if node.parent is not None else node).visits
    visits = node.visits + node.virtual_visits
    return node.value + config.exploration_constant * node.prior * math.sqrt(parent_visits) / (visits + 1)


class _Tree:
    """One search's bookkeeping."""

    def __init__(self, handle: Any, view: StateView, config: MCTSConfig) -> None:
        self.config = config
        self.root = Node(handle=handle, view=view)
        self.simulations = 0
        self.tokens = 0
        self.stopped = view.finished

    def active(self) -> bool:
        budget_left = self.config.token_budget is None or self.tokens < self.config.token_budget
        return not self.stopped and self.simulations < self.config.num_simulations and budget_left

    def wave_size(self) -> int:
        """How many nodes to expand in the next wave: ``parallel_expansions``, less the simulations
        left, and under a token budget as many as the budget left pays for at this tree's mean
        cost per simulation so far (rounded up; one before any cost is known), so that a wave
        overshoots the budget no more than the sequential search would (by under one simulation)."""
        wanted = min(self.config.parallel_expansions, self.config.num_simulations - self.simulations)
        budget = self.config.token_budget
        if budget is None:
            return wanted
        if self.simulations == 0:
            return 1
        cost = self.tokens / self.simulations
        return max(1, min(wanted, math.ceil((budget - self.tokens) / max(cost, 1e-9))))

    def select(self) -> list[Node]:
        """Up to :meth:`wave_size` distinct nodes to expand now (best PUCT first)."""
        wanted = self.wave_size()
        chosen: list[Node] = []
        for _ in range(wanted):
            best, best_score = None, -math.inf
            for node in nodes(self.root):
                if node.expandable(self.config) and node not in chosen:
                    score = puct(node, self.config)
                    if score > best_score:
                        best, best_score = node, score
            if best is None:
                break
            best.virtual_visits += 1
            chosen.append(best)
        for node in chosen:
            node.virtual_visits = 0
        if not chosen:
            self.stopped = True  # nothing left to expand
        return chosen


def search(model: SearchModel, roots: Sequence[tuple[Any, StateView]], config: MCTSConfig) -> list[SearchResult]:
    """Runs one search per root, all batched together.

    Args:
        model: the batched model (see :class:`~cola_agents.mcts.interface.SearchModel`).
        roots: ``(handle, view)`` of each search's root state.
        config: the search's hyperparameters.
    """
    if config.leaf_value == "q_network" and any(view.q_values is None for _, view in roots):
        raise ValueError("leaf_value='q_network' needs a model with a Q-network; use 'oracle' or train one")
    generator = torch.Generator().manual_seed(config.seed)
    trees = [_Tree(handle, view, config) for handle, view in roots]
    while any(tree.active() for tree in trees):
        selected = [(tree, node) for tree in trees if tree.active() for node in tree.select()]
        if not selected:
            break
        children = _expand(model, selected, config, generator)
        inherited = [_inherited_rollout(child, config) for child in children]
        fresh = [child.handle for child, rollout in zip(children, inherited, strict=True) if rollout is None]
        rolled = iter(model.rollout(fresh, config, generator) if fresh else [])
        for (tree, _), child, reused in zip(selected, children, inherited, strict=True):
            rollout = reused if reused is not None else next(rolled)
            child.leaf_score, child.rollout = rollout.score, rollout
            tree.tokens += len(child.actions) + (0 if reused is not None else len(rollout.actions))
            tree.simulations += 1
            _backup(child, config.discount)
            if child.finished and config.stop_on_finished_answer:
                tree.stopped = True
    return [_answer(tree) for tree in trees]


def _expand(
    model: SearchModel, selected: list[tuple[_Tree, Node]], config: MCTSConfig, generator: torch.Generator
) -> list[Node]:
    """Creates one child per selected node: one batched step, then batched macro continuations."""
    if config.merge_aliases:
        fresh = [node for _, node in selected if node.alias_groups is None]
        if fresh:
            for node, tokens in zip(fresh, model.action_tokens([node.handle for node in fresh]), strict=True):
                _group_aliases(node, tokens)
    actions = [node.untried.pop(0) for _, node in selected]
    steps = model.step([node.handle for _, node in selected], actions)
    children = []
    for (_, parent), action, step in zip(selected, actions, steps, strict=True):
        aliases = (parent.alias_groups or {}).get(action, [])
        child = Node(handle=step.handle, view=step.view, parent=parent, actions=[action], depth=parent.depth + 1,
                     prior=float(parent.view.prior[[action, *aliases]].sum()), tokens=[step.token],
                     aliases=aliases)  # fmt: skip
        parent.children[action] = child
        children.append(child)
    macro = [child for child in children if _is_macro_step(child, config)]
    probability_sums = {id(child): child.prior for child in macro}
    for _ in range(config.macro_max_tokens):
        macro = [child for child in macro if not child.finished and child.depth < config.max_depth_tokens]
        if not macro:
            break
        next_actions = [policy_action(child.view, config, generator) for child in macro]
        next_steps = model.step([child.handle for child in macro], next_actions)
        for child, action, step in zip(macro, next_actions, next_steps, strict=True):
            probability_sums[id(child)] += float(child.view.prior[action])
            _advance(child, step, action)
    for child in children:
        if id(child) in probability_sums:
            child.prior = probability_sums[id(child)] / len(child.actions)
    return children


def _inherited_rollout(child: Node, config: MCTSConfig) -> Rollout | None:
    """The rest of the parent's finished greedy rollout if ``child`` lies on its path (what a
    greedy rollout from ``child`` would write again), else ``None``."""
    parent = child.parent
    if not config.reuse_greedy_rollouts or config.rollout_policy != "greedy" or parent is None:
        return None
    taken = len(child.actions)
    rollout = parent.rollout
    if rollout is None or not rollout.finished or rollout.actions[:taken] != child.actions:
        return None
    if taken >= len(rollout.actions) or child.finished:
        return None  # the child ends where the rollout did: its own (empty) rollout scores it
    start = rollout.positions[taken] if rollout.positions else 0
    return Rollout(score=rollout.score, actions=rollout.actions[taken:], finished=True, reward=rollout.reward,
                   tokens=rollout.tokens[start:], positions=[p - start for p in rollout.positions[taken:]])  # fmt: skip


def _group_aliases(node: Node, tokens: np.ndarray) -> None:
    """Keeps one untried action per token written (the prior's first), the others as its aliases."""
    groups: dict[int, list[int]] = {}
    first_of_token: dict[int, int] = {}
    for action in node.untried:
        token = int(tokens[action])
        if token in first_of_token:
            groups[first_of_token[token]].append(action)
        else:
            first_of_token[token] = action
            groups[action] = []
    node.untried = [action for action in node.untried if action in groups]
    node.alias_groups = groups


def _advance(node: Node, step: Step, action: int) -> None:
    node.handle, node.view = step.handle, step.view
    node.actions.append(action)
    node.tokens.append(step.token)
    node.depth += 1


def _is_macro_step(child: Node, config: MCTSConfig) -> bool:
    """The Q-network's one-step TD consistency: (Q(s, a) - gamma * max Q(s', .))^2 < threshold."""
    parent = child.parent
    assert parent is not None
    if child.finished or parent.view.q_values is None or child.view.q_values is None:
        return False
    q_next = child.view.q_values[child.view.allowed] if child.view.allowed.any() else child.view.q_values
    td_error = parent.view.q_values[child.actions[0]] - config.discount * float(np.max(q_next))
    return bool(td_error**2 < config.macro_td_threshold)


def _backup(node: Node, discount: float) -> None:
    """The release's backup, from a new node to the root."""
    current: Node | None = node
    while current is not None:
        current.visits += 1
        if current.children:
            weighted, visits = 0.0, 0
            for action, child in current.children.items():
                current.q[action] = (child.leaf_score - current.leaf_score) + discount * child.value
                weighted += current.q[action] * child.visits
                visits += child.visits
            if visits:
                current.value = weighted / visits
        else:
            current.value = current.leaf_score
        current = current.parent


def _answer(tree: _Tree) -> SearchResult:
    """Best-valued finished node if it beats every rollout, else the best rollout."""
    candidates = list(nodes(tree.root))[1:]
    best_rollout, best_rollout_score = None, -math.inf
    for node in reversed(candidates):
        if node.leaf_score > best_rollout_score:
            best_rollout, best_rollout_score = node, node.leaf_score
    best_finished, best_finished_value = None, -math.inf
    for node in reversed(candidates):
        assert node.parent is not None
        value = node.parent.q.get(node.actions[0], node.value)
        if node.finished and value > best_finished_value and value > best_rollout_score:
            best_finished, best_finished_value = node, value
    if best_finished is not None:
        actions, score, from_finished = best_finished.path_actions, best_finished_value, True
    elif best_rollout is not None:
        actions, score, from_finished = (
            best_rollout.path_actions + best_rollout.rollout_actions,
            best_rollout_score,
            False,
        )
    else:  # no simulation ran (the root is finished)
        actions, score, from_finished = [], 0.0, False
    return SearchResult(root=tree.root, actions=actions, score=score, from_finished_node=from_finished,
                        simulations=tree.simulations, tokens=tree.tokens)  # fmt: skip
