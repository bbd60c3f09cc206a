"""MCTS on a tiny real CoLA model: KV reuse builds the re-encoding reference's tree; agents."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO

from cola_agents.agents import PlanningAgent, agent_env_kwargs, merge_agent_env_kwargs
from cola_agents.evaluation import evaluate
from cola_agents.mcts import (
    BestOfNAgent,
    CoLASearchModel,
    MCTSAgent,
    MCTSConfig,
    PlanningAgentBase,
    sb3_policy_prior,
    search,
)
from cola_agents.mcts.config import LeafQ
from cola_agents.mcts.reference import ReencodingSearchModel
from cola_agents.mcts.search import nodes
from cola_agents.policies import CoLAPriorPolicy, CoLARecurrentPriorPolicy
from cola_agents.sb3 import make_sb3_env
from cola_gym.envs.stepper import EpisodeStepper
from cola_gym.model import CoLAConfig, CoLAModel
from cola_gym.registration import pretrained_path


@pytest.fixture(scope="module")
def q_model(tiny_cola: CoLAModel) -> CoLAModel:
    """The tiny CoLA model plus a randomly initialised Q-network (1 block)."""
    config = CoLAConfig.from_dict({**tiny_cola.config.to_dict(), "q_network_num_layers": 1})
    model = CoLAModel(config, tiny_cola.decoder, tiny_cola.tokenizer)
    for name, part in tiny_cola.heads().items():
        getattr(model, name).load_state_dict(part.state_dict())
    with torch.no_grad():
        model.q_network.out.weight.mul_(20.0)  # Q-values spread enough for some TD checks to pass
    return model


def _env(model: CoLAModel, data_dir: Path, **kwargs):
    return gym.make("CoLA-GSM8K-v0", model=model, data_dir=str(data_dir), track_policy=True,
                    track_q=model.q_network is not None, **kwargs)  # fmt: skip


def _signature(root) -> list[tuple]:
    return [(tuple(n.path_actions), n.visits, round(n.value, 4), round(n.leaf_score, 4), tuple(n.rollout_actions),
             n.finished) for n in nodes(root)]  # fmt: skip


@pytest.mark.parametrize(("threshold", "leaf_q"), [(0.0, "last"), (0.05, "last"), (1e9, "last"), (0.05, "path_mean")])
def test_kv_reusing_search_builds_the_reference_tree(
    q_model: CoLAModel, data_dir: Path, threshold: float, leaf_q: LeafQ
) -> None:
    env = _env(q_model, data_dir)
    env.reset(options={"problem_index": 3})
    base = env.unwrapped
    prompt = q_model.tokenizer(base.prompt_text, add_special_tokens=False)["input_ids"]
    config = MCTSConfig(num_simulations=7, root_width=3, node_width=2, macro_td_threshold=threshold,
                        macro_max_tokens=3, rollout_max_tokens=5, stop_on_finished_answer=False, seed=1,
                        leaf_q=leaf_q)  # fmt: skip
    cached_model = CoLASearchModel.for_env(env)
    cached = search(cached_model, [cached_model.root(base.episode, base.decoding_state)], config)[0]
    reference_model = ReencodingSearchModel.for_env(env)
    reference = search(reference_model, [reference_model.root(base.episode, prompt)], config)[0]
    assert _signature(cached.root) == _signature(reference.root)
    assert cached.actions == reference.actions and cached.tokens == reference.tokens
    for node in nodes(cached.root):  # aliases merged: one child per token written
        tokens = [child.token for child in node.children.values()]
        assert len(tokens) == len(set(tokens))
    macro = [n for n in nodes(cached.root) if len(n.actions) > 1]
    if threshold == 0.0:
        assert not macro  # a squared TD error is never below 0
    if threshold == 1e9:
        assert len(macro) == cached.simulations  # every node is a macro step


def test_the_micro_countdown_models_aliases_share_a_node() -> None:
    """The shipped micro model's 64 codes write a handful of tokens at a prompt: merged, the
    root's children are one per token; the release's search grows copies of the same subtree.
    (Every simulation expands the root: nodes below it are at the depth limit.)"""
    env = gym.make("CoLA-Micro-Countdown-Medium-Train-v0", track_policy=True)
    env.reset(options={"task_index": 8192})
    base = env.unwrapped
    search_model = CoLASearchModel.for_env(env)
    config = MCTSConfig(num_simulations=8, root_width=16, max_depth_tokens=1, leaf_value="oracle",
                        rollout_policy="greedy", rollout_max_tokens=8, stop_on_finished_answer=False)  # fmt: skip
    root = search_model.root(base.episode, base.decoding_state)
    merged, copied = (search(search_model, [root], dataclasses.replace(config, merge_aliases=merge))[0]
                      for merge in (True, False))  # fmt: skip
    tokens = [child.token for child in merged.root.children.values()]
    assert len(tokens) == len(set(tokens)) and any(child.aliases for child in merged.root.children.values())
    copies = [child.token for child in copied.root.children.values()]
    assert len(set(copies)) < len(copies) and set(copies) <= set(tokens)
    answers = {tuple(n.path_actions + n.rollout_actions) for n in nodes(merged.root)}
    assert merged.tokens <= copied.tokens and len(answers) > 1


def test_a_node_on_its_parents_greedy_rollout_reads_the_tokens_a_rollout_would() -> None:
    """The shipped micro verifier, greedy rollouts, Q leaf values: a node on its parent's rollout
    takes the rest of it; every node's rollout equals, token for token and in score, what the
    search that decodes every rollout afresh gets, and the tree is the same with fewer tokens."""
    env = gym.make("CoLA-Micro-Countdown-Medium-Train-v0", model=pretrained_path("micro-countdown-verifier"),
                   track_policy=True, track_q=True)  # fmt: skip
    env.reset(options={"task_index": 8200})
    base = env.unwrapped
    search_model = CoLASearchModel.for_env(env)
    config = MCTSConfig(num_simulations=24, leaf_q="path_mean", rollout_policy="greedy", rollout_max_tokens=64,
                        parallel_expansions=4, stop_on_finished_answer=False)  # fmt: skip
    reused, fresh = (search(search_model, [search_model.root(base.episode, base.decoding_state)],
                            dataclasses.replace(config, reuse_greedy_rollouts=reuse))[0]
                     for reuse in (True, False))  # fmt: skip
    pairs = list(zip(nodes(reused.root), nodes(fresh.root), strict=True))[1:]
    for ours, theirs in pairs:
        assert ours.path_actions == theirs.path_actions and ours.visits == theirs.visits
        assert ours.rollout is not None and theirs.rollout is not None
        mine, other = ours.rollout, theirs.rollout
        assert (mine.actions, mine.tokens, mine.positions, mine.reward, mine.finished) == (
            other.actions, other.tokens, other.positions, other.reward, other.finished)  # fmt: skip
        assert mine.score == pytest.approx(other.score, abs=1e-5)
    inherited = [node for node, _ in pairs if node.parent.rollout_actions[: len(node.actions)] == node.actions
                 and len(node.parent.rollout_actions) > len(node.actions)]  # fmt: skip
    assert inherited and reused.actions == fresh.actions and reused.tokens < fresh.tokens


@pytest.mark.parametrize("leaf_q", ["last", "path_mean"])
def test_a_leaf_is_scored_by_the_q_values_of_its_path(q_model: CoLAModel, data_dir: Path, leaf_q: LeafQ) -> None:
    env = _env(q_model, data_dir)
    env.reset(options={"problem_index": 3})
    base = env.unwrapped
    config = MCTSConfig(num_simulations=6, root_width=3, macro_td_threshold=0.05, macro_max_tokens=3,
                        rollout_max_tokens=5, stop_on_finished_answer=False, leaf_q=leaf_q, seed=2)  # fmt: skip
    search_model = CoLASearchModel.for_env(env)
    result = search(search_model, [search_model.root(base.episode, base.decoding_state)], config)[0]
    for node in list(nodes(result.root))[1:]:
        handle, view = search_model.root(base.episode, base.decoding_state)
        q_values = []
        for action in node.path_actions + node.rollout_actions:  # replay the leaf's answer one action at a time
            assert view.q_values is not None
            q_values.append(float(view.q_values[action]))
            (step,) = search_model.step([handle], [action])
            handle, view = step.handle, step.view
        expected = np.mean(q_values) if leaf_q == "path_mean" else q_values[-1]
        assert node.leaf_score == pytest.approx(expected, abs=1e-4)
    assert len({round(n.leaf_score, 6) for n in nodes(result.root)}) > 2  # the check compares distinct values


def test_mcts_agent_plans_and_replays_in_an_env(q_model: CoLAModel, data_dir: Path) -> None:
    agent = MCTSAgent(q_model, MCTSConfig(num_simulations=4, root_width=2, rollout_max_tokens=4, macro_max_tokens=2,
                                          stop_on_finished_answer=False))  # fmt: skip
    env = _env(q_model, data_dir, max_episode_steps=12)
    obs, _ = env.reset(options={"problem_index": 0})
    agent.bind(env)
    first_plan = None
    taken = []
    for _ in range(12):
        before = env.unwrapped.snapshot()
        action, _ = agent.predict(obs)
        after = env.unwrapped.snapshot()  # planning leaves the episode where it was
        assert after.episode == before.episode and after.state is before.state
        if first_plan is None:
            first_plan = agent.stats.results[0].actions
        taken.append(int(action))
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    assert taken[: len(first_plan)] == first_plan
    assert agent.stats.searches >= 2  # the episode outlived the first plan: planned again


def test_agents_run_through_the_shared_evaluation(q_model: CoLAModel, data_dir: Path) -> None:
    config = MCTSConfig(num_simulations=3, root_width=2, rollout_max_tokens=3, leaf_value="oracle")
    kwargs = {"model": q_model, "data_dir": str(data_dir), "max_episode_steps": 6}
    mcts = MCTSAgent(q_model, config)
    result = evaluate(mcts, "CoLA-GSM8K-v0", [4, 2, 9], n_envs=3, **kwargs)  # evaluate adds the agent's env_kwargs
    assert result.task_indices == [4, 2, 9] and len(result.successes) == 3
    assert mcts.stats.tokens > 0
    speed = mcts.stats.summary()  # search speed is an output of every search
    assert speed["nodes"] == sum(r.simulations for r in mcts.stats.results) > 0 and speed["seconds"] > 0
    assert speed["tokens_per_s"] > 0 and speed["nodes_per_s"] > 0
    assert 1 <= speed["rows_per_decoder_call"] <= 3 * config.num_simulations, "rows batched per decoder call"
    best_of_n = BestOfNAgent(q_model, num_samples=3, config=config)
    result = evaluate(best_of_n, "CoLA-GSM8K-v0", [4, 2], n_envs=2, **kwargs)
    assert best_of_n.stats.searches >= 2 and best_of_n.stats.tokens <= 2 * 3 * 3 * 2
    assert best_of_n.stats.rows_per_call > 1, "the samples of both problems go through the decoder together"
    # rows an evaluation is done with get the prior's argmax and no search
    vector = gym.make_vec("CoLA-GSM8K-v0", num_envs=2, vectorization_mode="vector_entry_point",
                          **merge_agent_env_kwargs(best_of_n, kwargs))  # fmt: skip
    vector.reset(options=[{"problem_index": 4}, {"problem_index": 2}])
    best_of_n.bind(vector)
    best_of_n.set_idle_rows([0, 1])
    searches = best_of_n.stats.searches
    actions, _ = best_of_n.predict(np.zeros((2, 1)))
    assert best_of_n.stats.searches == searches
    assert actions.tolist() == vector.decoding_state.policy_logits.argmax(-1).tolist()


def test_honest_search_needs_a_q_network(tiny_cola: CoLAModel) -> None:
    with pytest.raises(ValueError, match="needs a model with a Q-network"):
        MCTSAgent(tiny_cola)
    agent = MCTSAgent(tiny_cola, MCTSConfig(leaf_value="oracle"))
    with pytest.raises(RuntimeError, match="bind the agent"):
        agent.predict(np.zeros(4))


def test_a_handle_is_an_episode_and_its_state(q_model: CoLAModel, data_dir: Path) -> None:
    env = _env(q_model, data_dir)
    env.reset(options={"problem_index": 3})
    search_model = CoLASearchModel.for_env(env)
    handle, view = search_model.root(env.unwrapped.episode, env.unwrapped.decoding_state)
    (step,) = search_model.step([handle], [int(view.prior.argmax())])
    for branch in (handle, step.handle):
        assert [f.name for f in dataclasses.fields(branch)] == ["episode", "state", "reward", "q_path"]
        assert not any(isinstance(value, EpisodeStepper) for value in vars(branch).values())
    assert step.handle.episode.num_tokens == 1 and step.handle.q_path.steps == 1 and handle.q_path.last is None


def test_for_env_binds_the_stepper_of_a_single_or_vector_env(q_model: CoLAModel, data_dir: Path) -> None:
    single = _env(q_model, data_dir)
    single.reset(options={"problem_index": 5})
    vector = gym.make_vec("CoLA-GSM8K-v0", num_envs=2, vectorization_mode="vector_entry_point", model=q_model,
                          data_dir=str(data_dir), track_policy=True, track_q=True)  # fmt: skip
    vector.reset(options=[{"problem_index": 3}, {"problem_index": 5}])
    for env in (single, vector):
        assert CoLASearchModel.for_env(env).stepper is env.unwrapped.stepper
        assert ReencodingSearchModel.for_env(env).stepper is env.unwrapped.stepper
    # the vector env's row 1 is the single env's episode: the same root
    alone = CoLASearchModel.for_env(single).root(single.unwrapped.episode, single.unwrapped.decoding_state)[1]
    state = vector.unwrapped.decoding_state
    row = CoLASearchModel.for_env(vector).root(vector.unwrapped.episodes[1], state.select([1]))[1]
    np.testing.assert_allclose(row.prior, alone.prior, atol=1e-5)
    np.testing.assert_allclose(row.q_values, alone.q_values, atol=1e-4)
    assert (row.allowed == alone.allowed).all()
    with pytest.raises(ValueError, match="latent actions"):
        CoLASearchModel.for_env(gym.make("CoLA-GSM8K-Token-v0", model=q_model, data_dir=str(data_dir)))
    with pytest.raises(TypeError, match="expected a cola-gym env"):
        CoLASearchModel.for_env(object())


def test_planning_agents_share_their_constructor_and_env_kwargs(q_model: CoLAModel, tiny_cola: CoLAModel) -> None:
    oracle = MCTSConfig(leaf_value="oracle")
    for agent in (MCTSAgent(q_model), BestOfNAgent(q_model, 2)):
        assert isinstance(agent, PlanningAgentBase) and isinstance(agent, PlanningAgent)
        assert agent.env_kwargs() == {"track_policy": True, "track_q": True}
        assert agent_env_kwargs(agent) == agent.env_kwargs()
    for agent in (MCTSAgent(tiny_cola, oracle), BestOfNAgent(tiny_cola, 2, oracle)):
        assert agent.env_kwargs() == {"track_policy": True, "track_q": False}
    with pytest.raises(ValueError, match="needs a model with a Q-network"):
        BestOfNAgent(tiny_cola, 2)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        BestOfNAgent(q_model, 0)


def test_a_contradicting_env_argument_is_an_error(q_model: CoLAModel, data_dir: Path) -> None:
    agent = MCTSAgent(q_model, MCTSConfig(num_simulations=2, leaf_value="oracle"))
    with pytest.raises(ValueError, match="MCTSAgent needs an env made with track_q=True, but track_q=False was given"):
        evaluate(agent, "CoLA-GSM8K-v0", [0], model=q_model, data_dir=str(data_dir), track_q=False)
    with pytest.raises(ValueError, match="track_policy=True"):
        make_sb3_env("CoLA-GSM8K-v0", agent=agent, model=q_model, data_dir=str(data_dir), track_policy=False)
    env = make_sb3_env("CoLA-GSM8K-v0", n_envs=2, agent=agent, model=q_model, data_dir=str(data_dir))
    stepper = env.unwrapped.vector_env.stepper
    assert stepper.track_policy and stepper.track_q


def _ppo(model: CoLAModel, data_dir: Path, algorithm=PPO, policy=CoLAPriorPolicy):
    env = make_sb3_env("CoLA-GSM8K-v0", n_envs=2, model=model, data_dir=str(data_dir), observation="hidden+prior",
                       max_episode_steps=6)  # fmt: skip
    return algorithm(policy, env, n_steps=4, batch_size=4, seed=0)


def test_an_rl_agents_policy_is_the_searchs_prior(q_model: CoLAModel, data_dir: Path) -> None:
    config = MCTSConfig(num_simulations=5, root_width=3, rollout_max_tokens=4, macro_max_tokens=2, seed=3,
                        rollout_policy="greedy", stop_on_finished_answer=False)  # fmt: skip
    kwargs = {"model": q_model, "data_dir": str(data_dir), "max_episode_steps": 6}
    agent = _ppo(q_model, data_dir)  # an untrained prior policy is the CoLA prior: the same search
    plain, from_agent = MCTSAgent(q_model, config), MCTSAgent(q_model, config, prior_agent=agent)
    assert from_agent.env_kwargs()["observation"] == "hidden+prior"  # the observation the agent reads
    first = evaluate(plain, "CoLA-GSM8K-v0", [4, 2], n_envs=2, keep_text=True, **kwargs)
    second = evaluate(from_agent, "CoLA-GSM8K-v0", [4, 2], n_envs=2, keep_text=True, **kwargs)
    assert plain.stats.searches >= 2 and all(r.simulations == 5 for r in plain.stats.results)
    assert [r.actions for r in plain.stats.results] == [r.actions for r in from_agent.stats.results]
    assert first.texts == second.texts
    with torch.no_grad():  # a policy that differs from the prior: the search sees its probabilities
        agent.policy.action_net.weight.normal_(0.0, 1.0)
    env = _env(q_model, data_dir, observation="hidden+prior")
    obs, _ = env.reset(options={"problem_index": 4})
    base = env.unwrapped
    model = CoLASearchModel.for_env(env, sb3_policy_prior(agent, q_model.num_actions))
    _, view = model.root(base.episode, base.decoding_state)
    expected = agent.policy.get_distribution(torch.as_tensor(obs[None])).distribution.probs[0].detach().numpy()
    assert np.allclose(view.prior, expected, atol=1e-6)
    cola_prior = torch.softmax(base.decoding_state.policy_logits[0].float(), -1).numpy()
    assert not np.allclose(view.prior, cola_prior, atol=1e-3)
    step = model.step([model.root(base.episode, base.decoding_state)[0]], [int(np.argmax(view.prior))])[0]
    assert np.isclose(step.view.prior.sum(), 1.0) and not np.allclose(step.view.prior, view.prior)


def test_a_search_prior_must_be_a_latent_feed_forward_policy(q_model: CoLAModel, data_dir: Path) -> None:
    with pytest.raises(ValueError, match="recurrent policy needs its memory"):
        sb3_policy_prior(_ppo(q_model, data_dir, RecurrentPPO, CoLARecurrentPriorPolicy), q_model.num_actions)
    with pytest.raises(ValueError, match="acts over 64 actions, the search over 65"):
        sb3_policy_prior(_ppo(q_model, data_dir), 65)
    with pytest.raises(ValueError, match="no actor-critic policy"):
        sb3_policy_prior(object(), q_model.num_actions)
    env = _env(q_model, data_dir)
    env.reset(options={"problem_index": 4})
    model = CoLASearchModel.for_env(env, lambda observations: np.full((len(observations), 3), 1 / 3))
    with pytest.raises(ValueError, match="one probability per latent action"):
        model.root(env.unwrapped.episode, env.unwrapped.decoding_state)
