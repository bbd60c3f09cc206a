"""Offline Q-learning: logged episodes, Double DQN on a tiny model, exact resume."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from cola_agents.collect import collect_episodes
from cola_agents.mcts import MCTSConfig
from cola_gym.envs import Task, TaskStart, TurnOutcome
from cola_gym.errors import DataFormatError
from cola_gym.model import CoLAModel
from cola_gym.registration import ENV_ENTRY_POINT, VECTOR_ENTRY_POINT
from cola_gym.training import CoLATrainer, TrainConfig
from cola_gym.training.objectives import (
    RANKING_SCALE,
    pairwise_ranking_loss,
    q_ranking_metrics,
    ranking_auc,
    top_answer_rate,
)
from cola_gym.training.q_records import load_episodes
from cola_gym.training.stages import stage_objective


class MagicWordTask(Task[None]):
    """One token, rewarded when it is the magic word (a bandit over the real model)."""

    def __init__(self, magic_word: str = " grape") -> None:
        self.magic_word = magic_word

    @property
    def num_tasks(self) -> int:
        return 1  # one instance: collect_episodes names its task index

    def begin(self, options: Mapping[str, Any], rng: Any) -> TaskStart[None]:
        return TaskStart(None, ({"role": "user", "content": "Say the magic word."},))

    def turn_complete(self, state: None, turn_text: str) -> bool:
        return True

    def end_turn(self, state: None, turn_text: str) -> TurnOutcome[None]:
        return TurnOutcome(None, reward=float(turn_text == self.magic_word))


@pytest.fixture(scope="module")
def magic(speller) -> tuple[CoLAModel, int]:
    model, spell = speller
    actions = spell(" apple banana cherry date elder fig grape kiwi")
    if "Test-MagicWord-v0" not in gym.registry:
        gym.register("Test-MagicWord-v0", entry_point=ENV_ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT,
                     kwargs={"task": MagicWordTask(" grape")})  # fmt: skip
    return model, actions[-2]  # the action that says " grape"


def _learner(model: CoLAModel) -> CoLAModel:
    """A copy of ``model``'s heads on its decoder, with a fresh one-block Q-network."""
    learner = CoLAModel(model.config, model.decoder, model.tokenizer)
    for name, part in model.heads().items():
        getattr(learner, name).load_state_dict(part.state_dict())
    learner.add_q_network(1)
    return learner


def test_collected_episodes_log_actions_and_rewards(magic, tmp_path: Path) -> None:
    model, magic_action = magic
    path = tmp_path / "episodes.jsonl"
    summary = collect_episodes("Test-MagicWord-v0", [0], path, samples=64, config=MCTSConfig(leaf_value="oracle",
                               rollout_top_k=64, seed=0), show_progress=False, model=model)  # fmt: skip
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert summary["episodes"] == len(rows) == 64
    for row in rows:
        assert len(row["actions"]) == 1 and row["positions"] == [row["response_start"] - 1]
        assert row["reward"] == float(row["actions"][0] == magic_action)  # the env's own verdict
    assert 0 < summary["success_rate"] < 1


@pytest.mark.parametrize("q_targets", ["double_dqn", "monte_carlo"])
def test_q_learning_learns_which_action_pays(magic, tmp_path: Path, q_targets: str) -> None:
    model, magic_action = magic
    path = tmp_path / "episodes.jsonl"
    collect_episodes("Test-MagicWord-v0", [0], path, samples=96, show_progress=False,
                     config=MCTSConfig(leaf_value="oracle", rollout_top_k=64, seed=1), model=model)  # fmt: skip
    learner = _learner(model)
    config = TrainConfig(stage="q", steps=120, batch_size=16, seq_len=64, learning_rate=3e-3, warmup_steps=5,
                         checkpoint_every=60, target_sync_every=20, log_every=20, q_targets=q_targets)  # fmt: skip
    held_out = tmp_path / "held-out.jsonl"
    collect_episodes("Test-MagicWord-v0", [0], held_out, samples=48, show_progress=False,
                     config=MCTSConfig(leaf_value="oracle", rollout_top_k=64, seed=2), model=model)  # fmt: skip
    before = q_ranking_metrics(learner, load_episodes(held_out))
    metrics = CoLATrainer(learner, config, load_episodes(path), tmp_path / "q", eval_examples=load_episodes(held_out),
                          show_progress=False).train()  # fmt: skip
    # one-step episodes: the first, middle and last step are the same action
    assert metrics["q/auc_first_step"] == metrics["q/auc_mid_episode"] == metrics["q/auc_last_step"]
    assert metrics["q/auc_first_step"] > 0.95 > before["q/auc_first_step"], (before, metrics)
    assert metrics["q/episodes"] == 48 and 0 < metrics["q/success_rate"] < 1
    # one problem: ranking within it is the whole ranking
    assert metrics["q/problems_within"] == 1 and metrics["q/auc_within_problem"] == metrics["q/auc_last_step"]
    assert metrics["q/auc_within_problem_path_mean"] == metrics["q/auc_within_problem"]  # one step: its own mean
    assert metrics["q/top_answer_right"] == 1.0 and metrics["q/prompts_with_a_right_answer"] == 1.0
    assert "q/auc_first_step" in (tmp_path / "q" / "final" / "README.md").read_text()
    env = gym.make("Test-MagicWord-v0", model=learner, track_policy=True, track_q=True)
    env.reset()
    q_values = env.unwrapped.decoding_state.q_values[0]
    assert int(q_values.argmax()) == magic_action, q_values
    assert q_values[magic_action] > 0.5 and q_values.median() < 0.2
    reloaded = CoLAModel.from_pretrained(tmp_path / "q" / "final")
    assert torch.equal(reloaded.q_network.out.weight, learner.q_network.out.weight)


def test_ranking_loss_orders_one_prompts_answers(magic, tmp_path: Path) -> None:
    model, _ = magic
    path = tmp_path / "episodes.jsonl"
    collect_episodes("Test-MagicWord-v0", [0], path, samples=96, show_progress=False,
                     config=MCTSConfig(leaf_value="oracle", rollout_top_k=64, seed=1), model=model)  # fmt: skip
    learner = _learner(model)
    # the ranking term dominates: were its sign wrong, the magic word would end up ranked last
    config = TrainConfig(stage="q", steps=60, batch_size=16, seq_len=64, learning_rate=3e-3, warmup_steps=5,
                         log_every=10, q_targets="monte_carlo", q_ranking_weight=10.0)  # fmt: skip
    episodes = load_episodes(path)
    metrics = CoLATrainer(learner, config, episodes, tmp_path / "q", eval_examples=episodes,
                          show_progress=False).train()  # fmt: skip
    assert metrics["q/auc_within_problem_path_mean"] > 0.95, metrics


@pytest.mark.parametrize(
    ("scores", "rewards", "groups", "pairs", "loss"),
    [
        ([0.9, 0.1], [1.0, 0.0], [0, 0], 1, math.log1p(math.exp(-0.8 * RANKING_SCALE))),  # in order: small
        ([0.1, 0.9], [1.0, 0.0], [0, 0], 1, math.log1p(math.exp(0.8 * RANKING_SCALE))),  # reversed: large
        ([0.5, 0.5, 0.5], [1.0, 0.0, 0.0], [0, 0, 0], 2, math.log(2.0)),  # ties: log 2 each
        ([0.9, 0.1], [1.0, 0.0], [0, 1], 0, 0.0),  # different prompts are never compared
        ([0.9, 0.1, 0.3], [1.0, 1.0, 1.0], [0, 0, 0], 0, 0.0),  # one outcome: no pairs
    ],
)
def test_pairwise_ranking_loss(scores, rewards, groups, pairs, loss) -> None:
    scores_t = torch.tensor(scores, requires_grad=True)
    value, count = pairwise_ranking_loss(scores_t, torch.tensor(rewards), torch.tensor(groups))
    assert count == pairs and float(value.detach()) == pytest.approx(loss, rel=1e-5)
    value.backward()  # differentiable with or without pairs
    if pairs:
        assert float(scores_t.grad[0]) <= 0  # raising the right answer's score lowers the loss


@pytest.mark.parametrize(
    ("scores", "right", "groups", "rate"),
    [
        ([0.9, 0.1, 0.8, 0.2], [1, 0, 0, 1], [[0, 1], [2, 3]], 0.5),  # first prompt's top is right, second's wrong
        ([0.5, 0.5], [0, 1], [[0, 1]], 0.0),  # equal scores: the first answer counts
        ([0.2, 0.9, 0.7], [0, 0, 1], [[0, 1], [2]], 1.0),  # a prompt without a right answer is left out
        ([0.2, 0.9], [0, 0], [[0, 1]], math.nan),  # no right answer anywhere
    ],
)
def test_top_answer_rate(scores, right, groups, rate) -> None:
    value = top_answer_rate(np.asarray(scores), np.asarray(right, dtype=bool), [np.asarray(g) for g in groups])
    assert value == rate or (math.isnan(rate) and math.isnan(value))


def test_ranking_batches_keep_each_prompts_episodes_together(tiny_cola: CoLAModel, data_dir: Path,
                                                            tmp_path: Path) -> None:  # fmt: skip
    path = tmp_path / "episodes.jsonl"
    collect_episodes("CoLA-GSM8K-Train-v0", [0, 1, 2], path, samples=4, show_progress=False,
                     config=MCTSConfig(leaf_value="oracle", rollout_max_tokens=3), model=tiny_cola,
                     data_dir=str(data_dir))  # fmt: skip
    episodes = load_episodes(path)
    model = CoLAModel(tiny_cola.config, tiny_cola.decoder, tiny_cola.tokenizer)
    model.add_q_network(1)
    config = TrainConfig(stage="q", steps=3, batch_size=4, seq_len=512, q_ranking_weight=1.0)
    trainer = CoLATrainer(model, config, episodes, tmp_path / "q", show_progress=False)
    prompts = {tuple(e.ids[: e.response_start].tolist()) for e in episodes}
    assert len(prompts) == 3

    def prompt_of(row: torch.Tensor) -> tuple[int, ...]:
        (found,) = [p for p in prompts if tuple(row[: len(p)].tolist()) == p]
        return found

    seen = set()
    for step in range(3):  # 12 episodes, 3 prompts of 4, batches of 4: each batch one prompt
        batch = trainer._batch(step)
        assert batch.groups is not None and len(set(batch.groups.tolist())) == 1
        assert len({prompt_of(row) for row in batch.ids}) == 1
        seen.add(prompt_of(batch.ids[0]))
    assert seen == prompts  # every prompt once per epoch
    batch = trainer._batch(0)
    batch.rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])  # two right, two wrong: four pairs
    objective = stage_objective(model, config)
    hidden = model.hidden_states(batch.ids, batch.attention_mask)
    _, logged = objective.loss(batch, hidden, torch.Generator())
    assert int(logged["q/ranking_pairs"]) == 4 and float(logged["loss/ranking"]) > 0
    batch.groups = None
    with pytest.raises(ValueError, match=r"batch\.groups"):
        objective.loss(batch, hidden, torch.Generator())
    with pytest.raises(ValueError, match="q_ranking_weight must be >= 0"):
        TrainConfig(stage="q", q_ranking_weight=-1.0)
    with pytest.raises(ValueError, match="stage q only"):
        TrainConfig(stage="1a", q_ranking_weight=1.0)


def test_stage_q_resumes_exactly(tiny_cola: CoLAModel, data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "episodes.jsonl"
    collect_episodes("CoLA-GSM8K-Train-v0", [0, 1, 2], path, samples=2, show_progress=False,
                     config=MCTSConfig(leaf_value="oracle", rollout_max_tokens=6), model=tiny_cola,
                     data_dir=str(data_dir))  # fmt: skip
    episodes = load_episodes(path)
    assert all(len(e.transitions.actions) == 6 for e in episodes)  # multi-step: bootstrapped targets
    config = TrainConfig(stage="q", steps=8, batch_size=2, seq_len=256, learning_rate=1e-3, warmup_steps=1,
                         checkpoint_every=4, target_sync_every=2)  # fmt: skip

    def fresh() -> CoLAModel:
        model = CoLAModel(tiny_cola.config, tiny_cola.decoder, tiny_cola.tokenizer)
        model.add_q_network(1)
        return model

    straight = fresh()
    CoLATrainer(straight, config, episodes, tmp_path / "a", show_progress=False).train()
    interrupted = fresh()
    CoLATrainer(interrupted, config, episodes, tmp_path / "b", show_progress=False).train(until_step=5)
    resumed = fresh()
    CoLATrainer(resumed, config, episodes, tmp_path / "b", show_progress=False).train()
    for a, b in zip(straight.q_network.parameters(), resumed.q_network.parameters(), strict=True):
        assert torch.equal(a, b)


def test_bad_episode_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"ids": [1, 2], "actions": [3], "positions": [5], "reward": 1.0,
                               "response_start": 1}) + "\n")  # fmt: skip
    with pytest.raises(DataFormatError, match="do not fit"):
        load_episodes(bad)
    with pytest.raises(ValueError, match="target_sync_every >= 1"):
        TrainConfig(stage="q", target_sync_every=0)


@pytest.mark.parametrize(
    ("scores", "labels", "auc"),
    [
        ([0.9, 0.8, 0.2, 0.1], [True, True, False, False], 1.0),  # every right one above every wrong one
        ([0.1, 0.2, 0.8, 0.9], [True, True, False, False], 0.0),
        ([0.5, 0.5, 0.5, 0.5], [True, False, True, False], 0.5),  # ties count half
        ([0.9, 0.3, 0.5, 0.1], [True, True, False, False], 0.75),  # 3 of 4 pairs in order
        ([0.7, 0.7, 0.2], [True, False, False], 0.75),  # one tie, one win
    ],
)
def test_ranking_auc_is_the_share_of_pairs_in_order(scores: list[float], labels: list[bool], auc: float) -> None:
    assert ranking_auc(scores, labels) == pytest.approx(auc)


def test_ranking_auc_of_one_class_is_undefined() -> None:
    assert math.isnan(ranking_auc([0.1, 0.9], [True, True]))
    assert math.isnan(ranking_auc([], []))


def test_ranking_needs_a_q_network(tiny_cola: CoLAModel, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no Q-network"):
        q_ranking_metrics(tiny_cola, [])
