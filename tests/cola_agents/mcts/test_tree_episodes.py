"""A search tree's answers as Q-learning episodes, on the shipped micro Countdown model."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from cola_agents.cli import main
from cola_agents.collect import collect_search_episodes, tree_episodes
from cola_agents.mcts import CoLASearchModel, MCTSConfig, search
from cola_agents.mcts.search import nodes
from cola_gym.model import CoLAModel
from cola_gym.registration import pretrained_path
from cola_gym.training.objectives import q_ranking_metrics, ranking_auc
from cola_gym.training.q_records import load_episodes, write_episodes

ENV_ID = "CoLA-Micro-Countdown-Medium-Train-v0"
CONFIG = MCTSConfig(leaf_value="oracle", rollout_policy="greedy", token_budget=160, num_simulations=64,
                    rollout_max_tokens=64, stop_on_finished_answer=False, parallel_expansions=4)  # fmt: skip


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, float], list[dict]]:
    path = tmp_path_factory.mktemp("tree") / "episodes.jsonl"
    summary = collect_search_episodes(ENV_ID, range(8192, 8198), path, CONFIG, batch_problems=3,
                                      show_progress=False)  # fmt: skip
    return summary, [json.loads(line) for line in path.read_text().splitlines()]


def test_every_tree_episode_replays_in_the_env_to_its_tokens_and_reward(collected) -> None:
    summary, rows = collected
    env = gym.make(ENV_ID, max_episode_steps=64)
    tokenizer = env.unwrapped.model.tokenizer
    for row in rows:
        env.reset(options={"task_index": row["problem_index"]})
        for action in row["actions"]:
            _, reward, terminated, truncated, info = env.step(action)
        read = row["ids"][row["response_start"] :]
        assert env.unwrapped.episode.positions == len(row["ids"])  # the tokens the decoder read
        text = tokenizer.decode(read, skip_special_tokens=True)  # all but the token that ended the answer
        assert info["text"].startswith(text)
        assert len(tokenizer(info["text"][len(text) :], add_special_tokens=False)["input_ids"]) <= 1
        start = row["response_start"] - 1
        assert row["positions"] == list(range(start, start + len(row["actions"])))
        assert row["reward"] == reward and row["finished"] == (terminated or truncated)
    assert summary["episodes"] == len(rows) and 0 < summary["success_rate"] < 1


def test_a_tree_gives_distinct_answers_that_share_prefixes(collected) -> None:
    summary, rows = collected
    by_problem = defaultdict(list)
    for row in rows:
        by_problem[row["problem_index"]].append((tuple(row["ids"][row["response_start"] :]), row["reward"]))
    assert sorted(by_problem) == list(range(8192, 8198))
    for answers in by_problem.values():
        assert len(answers) == len(set(answers)) > 2
        assert len({tokens[0] for tokens, _ in answers}) < len(answers)  # branches below the root
    right = sum(any(r["reward"] == 1.0 for r in rows if r["problem_index"] == p) for p in by_problem)
    assert summary["searches_with_a_right_answer"] == right / len(by_problem)
    assert summary["episodes_per_search"] == len(rows) / len(by_problem)


def test_tree_episodes_start_at_the_start_of_an_answer() -> None:
    env = gym.make(ENV_ID, track_policy=True)
    env.reset(options={"task_index": 8192})
    env.step(int(env.unwrapped.decoding_state.policy_logits.argmax()))
    model = CoLASearchModel.for_env(env)
    (result,) = search(model, [model.root(env.unwrapped.episode, env.unwrapped.decoding_state)], CONFIG)
    with pytest.raises(ValueError, match="from the start of a single-turn answer"):
        tree_episodes(8192, result)


def test_the_command_checks_its_search_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "e.jsonl")
    assert main(["collect-episodes", "--env", ENV_ID, "--search", "--out", out]) == 2
    assert "--search needs --token-budget" in capsys.readouterr().err
    assert main(["collect-episodes", "--env", ENV_ID, "--leaf-q", "path_mean", "--out", out]) == 2
    assert "leaf_q only apply with --search" in capsys.readouterr().err
    assert not Path(out).exists()


def test_multi_turn_trees_are_refused(tmp_path: Path) -> None:
    config = MCTSConfig(leaf_value="oracle", rollout_policy="greedy", token_budget=48, rollout_max_tokens=48,
                        stop_on_finished_answer=False)  # fmt: skip
    with pytest.raises(ValueError, match="single-turn"):  # a rollout reads the room's answer between commands
        collect_search_episodes("CoLA-Micro-ALFWorld-Train-v0", [0], tmp_path / "e.jsonl", config,
                                show_progress=False, max_commands=3)  # fmt: skip
    assert not (tmp_path / "e.jsonl").exists()


def test_stage_qs_path_mean_ranking_is_the_searchs_leaf_score(tmp_path: Path) -> None:
    """``q/auc_within_problem_path_mean`` ranks a tree's answers by the same values MCTS-Q scores
    its leaves with (mean Q over the answer's actions, here from the cached search, there from a
    full forward pass of the logged episode)."""
    model = CoLAModel.from_pretrained(pretrained_path("micro-countdown"))
    model.add_q_network(1, seed=3)
    with torch.no_grad():
        model.q_network.out.weight.mul_(20.0)  # spread the values: no near ties to flip
    config = MCTSConfig(leaf_value="q_network", leaf_q="path_mean", rollout_policy="greedy", token_budget=160,
                        rollout_max_tokens=64, stop_on_finished_answer=False, parallel_expansions=4)  # fmt: skip
    vector = gym.make_vec(ENV_ID, num_envs=8, vectorization_mode="vector_entry_point", model=model, track_policy=True,
                          track_q=True).unwrapped  # fmt: skip
    problems = list(range(8192, 8200))
    vector.reset(options=[{"task_index": index} for index in problems])
    search_model = CoLASearchModel.for_env(vector)
    state = vector.decoding_state
    roots = [search_model.root(episode, state.select([row])) for row, episode in enumerate(vector.episodes)]
    aucs, records = [], []
    for index, result in zip(problems, search(search_model, roots, config), strict=True):
        episodes = tree_episodes(index, result)
        scores = {(tuple(n.path_actions + n.rollout_actions)): n.leaf_score for n in nodes(result.root) if n.rollout}
        auc = ranking_auc([scores[tuple(e["actions"])] for e in episodes], [e["reward"] > 0.5 for e in episodes])
        aucs += [] if np.isnan(auc) else [auc]
        records += episodes
    write_episodes(tmp_path / "tree.jsonl", records)
    metrics = q_ranking_metrics(model, load_episodes(tmp_path / "tree.jsonl"))
    assert metrics["q/problems_within"] == len(aucs) >= 2
    assert metrics["q/auc_within_problem_path_mean"] == pytest.approx(np.mean(aucs), abs=1e-6)
    assert metrics["q/auc_within_problem_path_mean"] != metrics["q/auc_within_problem"]  # not the last step's
