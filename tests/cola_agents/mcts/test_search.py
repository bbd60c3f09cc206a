"""The search core against bandits with known answers (in the style of mctx's tests)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch

from cola_agents.mcts import MCTSConfig, search
from cola_agents.mcts.config import LeafQ, LeafValue
from cola_agents.mcts.interface import QPath, Rollout, StateView, Step, leaf_score, policy_action
from cola_agents.mcts.search import nodes


@dataclass
class TreeBandit:
    """A depth-``depth`` tree MDP: ``rewards[sequence]`` at the end, 0 for unknown sequences.

    Not a language model: the search's model interface with answers known in advance.
    """

    num_actions: int
    depth: int
    rewards: dict[tuple[int, ...], float]
    prior_logits: np.ndarray
    allowed: np.ndarray | None = None

    def view(self, handle: tuple[int, ...]) -> StateView:
        prior = np.exp(self.prior_logits - self.prior_logits.max())
        allowed = np.ones(self.num_actions, dtype=bool) if self.allowed is None else self.allowed
        return StateView(prior=prior / prior.sum(), allowed=allowed, q_values=None, finished=len(handle) >= self.depth)

    def root(self, episode: object = None, state: tuple[int, ...] = ()) -> tuple[tuple[int, ...], StateView]:
        return state, self.view(state)

    def step(self, handles: Sequence[tuple[int, ...]], actions: Sequence[int]) -> list[Step]:
        return [Step(handle=(*h, a), token=a, view=self.view((*h, a))) for h, a in zip(handles, actions, strict=True)]

    def action_tokens(self, handles: Sequence[tuple[int, ...]]) -> np.ndarray:
        return np.tile(np.arange(self.num_actions), (len(handles), 1))  # every action its own token

    def rollout(self, handles: Sequence[tuple[int, ...]], config: MCTSConfig, generator: torch.Generator):
        results = []
        for handle in handles:
            actions, current = [], handle
            while len(current) < self.depth:
                action = policy_action(self.view(current), config, generator)
                actions.append(action)
                current = (*current, action)
            results.append(Rollout(score=self.rewards.get(current, 0.0), actions=actions, finished=True))
        return results


def one_step_bandit(best: int = 5, num_actions: int = 8) -> TreeBandit:
    rewards = {(a,): 0.1 * a / num_actions for a in range(num_actions)}
    rewards[(best,)] = 1.0
    logits = -np.arange(num_actions, dtype=float)  # the prior prefers arm 0, the worst one
    return TreeBandit(num_actions, 1, rewards, logits)


def test_finds_the_best_arm() -> None:
    bandit = one_step_bandit(best=5)
    config = MCTSConfig(num_simulations=8, root_width=8, leaf_value="oracle", stop_on_finished_answer=False)
    (result,) = search(bandit, [bandit.root()], config)
    assert result.actions == [5] and result.from_finished_node
    assert result.simulations == 8


def test_one_simulation_picks_the_prior_argmax() -> None:
    bandit = one_step_bandit(best=5)
    bandit.prior_logits = np.array([0.0, 0.5, 3.0, 0.1, 0.0, 0.2, 0.0, 0.0])
    (result,) = search(bandit, [bandit.root()], MCTSConfig(num_simulations=1, leaf_value="oracle"))
    assert result.actions == [2]


def _deep_bandit(seed: int = 0) -> TreeBandit:
    rng = np.random.default_rng(seed)
    rewards = {tuple(int(x) for x in rng.integers(0, 4, size=3)): float(rng.random()) for _ in range(30)}
    return TreeBandit(4, 3, rewards, rng.normal(size=4))


def test_root_visits_sum_to_the_simulations() -> None:
    bandit = _deep_bandit()
    config = MCTSConfig(num_simulations=13, root_width=4, node_width=2, leaf_value="oracle",
                        stop_on_finished_answer=False)  # fmt: skip
    (result,) = search(bandit, [bandit.root()], config)
    root = result.root
    assert result.simulations == 13 == root.visits
    assert sum(child.visits for child in root.children.values()) == 13
    assert all(len(n.children) <= (4 if n is root else 2) for n in nodes(root))


def test_masked_actions_are_never_chosen() -> None:
    bandit = _deep_bandit()
    bandit.allowed = np.array([False, True, False, True])
    config = MCTSConfig(num_simulations=12, root_width=4, node_width=2, leaf_value="oracle",
                        stop_on_finished_answer=False, rollout_top_k=4)  # fmt: skip
    (result,) = search(bandit, [bandit.root()], config)
    used = {a for n in nodes(result.root) for a in n.actions + n.rollout_actions} | set(result.actions)
    assert used <= {1, 3} and len(used) == 2


def _tree_signature(root) -> list[tuple]:
    return [(tuple(n.path_actions), n.visits, round(n.value, 9), round(n.leaf_score, 9), tuple(n.rollout_actions))
            for n in nodes(root)]  # fmt: skip


def test_the_same_seed_gives_the_same_tree() -> None:
    bandit = _deep_bandit(1)
    config = MCTSConfig(num_simulations=10, root_width=4, leaf_value="oracle", stop_on_finished_answer=False, seed=3)
    first, second = (search(bandit, [bandit.root()], config)[0] for _ in range(2))
    assert _tree_signature(first.root) == _tree_signature(second.root)
    other = search(bandit, [bandit.root()], MCTSConfig(**{**config.__dict__, "seed": 4}))[0]
    assert _tree_signature(other.root) != _tree_signature(first.root)


def test_trees_searched_together_equal_trees_searched_alone() -> None:
    bandits = [_deep_bandit(s) for s in range(3)]
    config = MCTSConfig(num_simulations=6, root_width=4, leaf_value="oracle", rollout_policy="greedy",
                        stop_on_finished_answer=False, parallel_expansions=2)  # fmt: skip

    class Many:  # one model serving several bandits, as the batched CoLA model serves many problems
        num_actions = 4

        def step(self, handles, actions):
            steps = [(b, b.step([h], [a])[0]) for (b, h), a in zip(handles, actions, strict=True)]
            return [Step(handle=(b, s.handle), token=s.token, view=s.view) for b, s in steps]

        def action_tokens(self, handles):
            return np.concatenate([b.action_tokens([h]) for b, h in handles])

        def rollout(self, handles, cfg, generator):
            return [b.rollout([h], cfg, generator)[0] for b, h in handles]

    together = search(Many(), [((b, ()), b.view(())) for b in bandits], config)
    for bandit, result in zip(bandits, together, strict=True):
        alone = search(bandit, [bandit.root()], config)[0]
        assert result.actions == alone.actions and result.simulations == alone.simulations == 6


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="num_simulations must be >= 1"):
        MCTSConfig(num_simulations=0)
    with pytest.raises(ValueError, match="leaf_value"):
        MCTSConfig(leaf_value="reward_model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leaf_q must be 'last' or 'path_mean'"):
        MCTSConfig(leaf_q="median")  # type: ignore[arg-type]
    bandit = one_step_bandit()
    with pytest.raises(ValueError, match="needs a model with a Q-network"):
        search(bandit, [bandit.root()], MCTSConfig())  # q_network leaf values, but no Q-values


@pytest.mark.parametrize(
    ("leaf_value", "leaf_q", "path", "reward", "score"),
    [
        ("q_network", "last", QPath().then(0.2).then(0.8), 0.0, 0.8),
        ("q_network", "path_mean", QPath().then(0.2).then(0.8), 0.0, 0.5),
        ("q_network", "path_mean", QPath().then(0.2).then(None), 0.0, 0.2),  # no Q-network value: unchanged
        ("q_network", "path_mean", QPath(), 1.0, 0.0),  # nothing valued: 0, never the reward
        ("oracle", "path_mean", QPath().then(0.9), 0.0, 0.0),  # the oracle reads the reward only
        ("oracle", "last", QPath(), 1.0, 1.0),
    ],
)
def test_leaf_score_table(leaf_value: LeafValue, leaf_q: LeafQ, path: QPath, reward: float, score: float) -> None:
    config = MCTSConfig(leaf_value=leaf_value, leaf_q=leaf_q)
    assert leaf_score(reward, path, config) == pytest.approx(score)


class AliasBandit(TreeBandit):
    """Actions ``2t`` and ``2t + 1`` write the same token ``t`` and lead to the same state, as
    latent codes that are aliases of one token do."""

    def step(self, handles: Sequence[tuple[int, ...]], actions: Sequence[int]) -> list[Step]:
        return [Step(handle=(*h, a // 2), token=a // 2, view=self.view((*h, a // 2)))
                for h, a in zip(handles, actions, strict=True)]  # fmt: skip

    def action_tokens(self, handles: Sequence[tuple[int, ...]]) -> np.ndarray:
        return np.tile(np.arange(self.num_actions) // 2, (len(handles), 1))


@pytest.mark.parametrize("merge", [True, False])
def test_aliases_of_one_token_share_a_node(merge: bool) -> None:
    bandit = AliasBandit(8, 1, {(t,): float(t == 2) for t in range(4)}, -np.arange(8, dtype=float))
    config = MCTSConfig(num_simulations=8, root_width=8, leaf_value="oracle", stop_on_finished_answer=False,
                        merge_aliases=merge)  # fmt: skip
    (result,) = search(bandit, [bandit.root()], config)
    children = list(result.root.children.values())
    prior = bandit.view(()).prior
    assert result.root.children[4].leaf_score == 1.0 and result.actions[0] // 2 == 2  # token 2, either way
    if merge:  # one node per token, whose P is the token's probability; aliases cost no step
        assert [c.token for c in children] == [0, 1, 2, 3] and [c.aliases for c in children] == [[1], [3], [5], [7]]
        assert [c.prior for c in children] == pytest.approx([prior[2 * t] + prior[2 * t + 1] for t in range(4)])
        assert result.simulations == 4 and result.tokens == 4
    else:  # the release's search: eight nodes, each token twice
        assert [c.token for c in children] == [0, 0, 1, 1, 2, 2, 3, 3] and not any(c.aliases for c in children)
        assert result.simulations == 8 and result.tokens == 8


@pytest.mark.parametrize("parallel", [1, 4])
def test_a_wave_spends_no_more_of_the_budget_than_the_sequential_search(parallel: int) -> None:
    """Depth 4: a simulation below the root costs 4 tokens (its step, then a 3-token rollout)."""
    bandit = TreeBandit(3, 4, {(0, 1, 2, 0): 1.0}, np.zeros(3))
    config = MCTSConfig(num_simulations=64, root_width=3, node_width=2, token_budget=10, leaf_value="oracle",
                        parallel_expansions=parallel, stop_on_finished_answer=False)  # fmt: skip
    [result] = search(bandit, [bandit.root()], config)
    assert 10 <= result.tokens < 10 + 4 and result.simulations == 3  # under one simulation past the budget
    [unbounded] = search(bandit, [bandit.root()], replace(config, token_budget=None, num_simulations=8))
    assert unbounded.tokens > 12 and unbounded.simulations == 8


def _tree(result) -> list[tuple]:
    return [(tuple(n.path_actions), n.visits, round(n.value, 6), n.leaf_score, tuple(n.rollout_actions))
            for n in nodes(result.root)]  # fmt: skip


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_node_on_its_parents_greedy_rollout_takes_the_rest_of_it(parallel: int) -> None:
    """Greedy rollouts: the node that follows its parent's rollout would decode the same tokens
    again; it takes them from the parent instead. Same tree, each rollout's tokens paid once."""
    rewards = {(a, b, c, d): 0.1 * (a + b + c + d) for a in range(3) for b in range(3) for c in range(3)
               for d in range(3)}  # fmt: skip
    bandit = TreeBandit(3, 4, rewards, np.array([0.0, -0.5, -1.0]))  # greedy: action 0 everywhere
    config = MCTSConfig(num_simulations=12, root_width=3, node_width=2, leaf_value="oracle",
                        rollout_policy="greedy", macro_td_threshold=0.0, parallel_expansions=parallel,
                        stop_on_finished_answer=False)  # fmt: skip
    [reused] = search(bandit, [bandit.root()], config)
    [fresh] = search(bandit, [bandit.root()], replace(config, reuse_greedy_rollouts=False))
    assert _tree(reused) == _tree(fresh) and reused.actions == fresh.actions
    paid = 0
    for node in list(nodes(reused.root))[1:]:
        parent_rollout = node.parent.rollout_actions if node.parent.rollout is not None else []
        follows = bool(parent_rollout) and parent_rollout[: len(node.actions)] == node.actions
        on_path = follows and len(parent_rollout) > len(node.actions)
        paid += len(node.actions) + (0 if on_path else len(node.rollout_actions))
    assert reused.tokens == paid < fresh.tokens
    assert fresh.tokens == sum(len(n.actions) + len(n.rollout_actions) for n in list(nodes(fresh.root))[1:])


def test_sampled_rollouts_are_never_taken_from_the_parent() -> None:
    """A sampled rollout is a fresh draw: the option changes nothing without greedy rollouts."""
    bandit = TreeBandit(3, 4, {(0, 1, 2, 0): 1.0}, np.zeros(3))
    config = MCTSConfig(num_simulations=10, root_width=3, node_width=2, leaf_value="oracle", rollout_policy="sample",
                        macro_td_threshold=0.0, stop_on_finished_answer=False, seed=3)  # fmt: skip
    [reused] = search(bandit, [bandit.root()], config)
    [fresh] = search(bandit, [bandit.root()], replace(config, reuse_greedy_rollouts=False))
    assert _tree(reused) == _tree(fresh) and reused.tokens == fresh.tokens
