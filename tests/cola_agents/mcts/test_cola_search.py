"""MCTS on a tiny real CoLA model: KV reuse builds the re-encoding reference's tree; agents."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from cola_agents.evaluation import evaluate
from cola_agents.mcts import BestOfNAgent, CoLASearchModel, MCTSAgent, MCTSConfig, search
from cola_agents.mcts.reference import ReencodingSearchModel
from cola_agents.mcts.search import nodes
from cola_gym.model import CoLAConfig, CoLAModel


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
    return [(tuple(n.path_actions), n.visits, round(n.value, 4), round(n.reward, 4), tuple(n.rollout_actions),
             n.finished) for n in nodes(root)]  # fmt: skip


@pytest.mark.parametrize("threshold", [0.0, 0.05, 1e9])
def test_kv_reusing_search_builds_the_reference_tree(q_model: CoLAModel, data_dir: Path, threshold: float) -> None:
    env = _env(q_model, data_dir)
    env.reset(options={"problem_index": 3})
    base = env.unwrapped
    prompt = q_model.tokenizer(base.prompt_text, add_special_tokens=False)["input_ids"]
    config = MCTSConfig(num_simulations=7, root_width=3, node_width=2, macro_td_threshold=threshold,
                        macro_max_tokens=3, rollout_max_tokens=5, stop_on_finished_answer=False, seed=1)  # fmt: skip
    cached_model = CoLASearchModel(q_model)
    cached = search(cached_model, [cached_model.root(base.stepper, base.episode, base.decoding_state)], config)[0]
    reference_model = ReencodingSearchModel(q_model)
    reference = search(reference_model, [reference_model.root(base.stepper, base.episode, prompt)], config)[0]
    assert _signature(cached.root) == _signature(reference.root)
    assert cached.actions == reference.actions and cached.tokens == reference.tokens
    macro = [n for n in nodes(cached.root) if len(n.actions) > 1]
    if threshold == 0.0:
        assert not macro  # a squared TD error is never below 0
    if threshold == 1e9:
        assert len(macro) == cached.simulations  # every node is a macro step


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
    result = evaluate(mcts, "CoLA-GSM8K-v0", [4, 2, 9], n_envs=3, **kwargs, **mcts.env_kwargs())
    assert result.task_indices == [4, 2, 9] and len(result.successes) == 3
    assert mcts.stats.tokens > 0
    best_of_n = BestOfNAgent(q_model, num_samples=3, config=config)
    result = evaluate(best_of_n, "CoLA-GSM8K-v0", [4, 2], n_envs=2, **kwargs, **best_of_n.env_kwargs())
    assert best_of_n.stats.searches >= 2 and best_of_n.stats.tokens <= 2 * 3 * 3 * 2
    # rows an evaluation is done with get the prior's argmax and no search
    vector = gym.make_vec("CoLA-GSM8K-v0", num_envs=2, vectorization_mode="vector_entry_point", **kwargs,
                          **best_of_n.env_kwargs())  # fmt: skip
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
