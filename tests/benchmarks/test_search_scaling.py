"""``benchmarks/search_scaling.py``: an RL agent's pool against the prior's, and the script end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3 import PPO

from cola_agents import PriorAgent
from cola_agents.mcts import MCTSConfig
from cola_agents.policies import CoLAPriorPolicy
from cola_agents.sb3 import make_sb3_env
from cola_gym.model import CoLAModel

ENV = "CoLA-Countdown-Easy-v0"


@pytest.fixture(scope="module")
def q_model_dir(tiny_cola_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny CoLA model with a (random) Q-network, saved."""
    model = CoLAModel.from_pretrained(tiny_cola_dir)
    model.add_q_network(1)
    path = tmp_path_factory.mktemp("tiny-cola-q")
    model.save_pretrained(path)
    return path


def _args(model: Path, problems: int = 3, leaf_q: str = "last") -> argparse.Namespace:
    return argparse.Namespace(model=str(model), env=ENV, problems=problems, first_problem=0, n_envs=2, max_tokens=10,
                              leaf_q=leaf_q)  # fmt: skip


def _save_prior_agent(model_dir: Path, path: Path) -> None:
    """An untrained PPO agent with the CoLA prior policy (it plays as the prior), saved to ``path``."""
    env = make_sb3_env(ENV, n_envs=2, model=str(model_dir), max_episode_steps=10, observation="hidden+prior")
    PPO(CoLAPriorPolicy, env, n_steps=4, batch_size=4, seed=0).save(path)


@pytest.mark.parametrize("leaf_q", ["last", "path_mean"])
def test_an_agents_greedy_answer_is_the_priors(benchmark_script, q_model_dir: Path, leaf_q: str) -> None:
    """The prior played as an SB3 agent gives the search model's own greedy answer, Q score included."""
    script = benchmark_script("search_scaling")
    args = _args(q_model_dir, leaf_q=leaf_q)
    priors = script.sample_pool(args, 0, 1, MCTSConfig(leaf_value="q_network", leaf_q=leaf_q, rollout_max_tokens=10))
    agents = script.agent_pool(args, 0, 2, PriorAgent(seed=0))
    assert len(agents) == len(priors) == 3
    for prior, agent in zip(priors, agents, strict=True):
        assert len(agent) == 3  # the greedy answer, then two samples
        assert agent[0]["answer"] == prior[0]["answer"] and agent[0]["tokens"] == prior[0]["tokens"]
        assert agent[0]["reward"] == prior[0]["reward"]
        assert agent[0]["q"] == pytest.approx(prior[0]["q"], abs=1e-4)
        assert all(0 < sample["tokens"] <= 10 for sample in agent)
    if leaf_q == "path_mean":  # a mean over several steps, not the last step's value
        last = script.sample_pool(_args(q_model_dir), 0, 1, MCTSConfig(leaf_value="q_network", rollout_max_tokens=10))
        assert any(abs(a[0]["q"] - b[0]["q"]) > 1e-3 for a, b in zip(priors, last, strict=True))


def test_the_script_reports_an_rl_agents_rows(benchmark_script, q_model_dir: Path, tmp_path: Path) -> None:
    script = benchmark_script("search_scaling")
    _save_prior_agent(q_model_dir, tmp_path / "agent.zip")
    out = tmp_path / "scaling.json"
    common = ["--model", str(q_model_dir), "--env", ENV, "--problems", "2", "--seeds", "0", "--budgets", "1", "2",
              "--mcts-budgets", "--max-tokens", "10", "--n-envs", "2", "--rl-budgets", "1",
              "--out", str(out)]  # fmt: skip
    script.main([*common, "--rl-agents", str(tmp_path / "agent.zip")])
    report = json.loads(out.read_text())
    summary = report["summary"]
    assert [p["budget"] for p in summary["best_of_n_q"]] == [1, 2]
    assert [p["budget"] for p in summary["rl_best_of_n_q"]] == [1]  # only the RL agent's budgets
    assert 0.0 <= summary["rl_greedy"][0]["accuracy"] <= 1.0 and summary["rl_greedy"][0]["tokens"] > 0
    assert report["runs"][0]["rl_agent"].endswith("agent.zip") and out.with_suffix(".png").is_file()
    for point in summary["best_of_n_q"]:  # each row against the baselines at its budget, problem by problem
        paired = point["paired"]
        assert "best_of_n_q" not in paired and set(paired) <= {"majority_vote", "rl_best_of_n_q"}
        vote = next(p for p in summary["majority_vote"] if p["budget"] == point["budget"])
        assert paired["majority_vote"]["difference"] == pytest.approx(point["accuracy"] - vote["accuracy"])
    assert "rl_best_of_n_q" in summary["best_of_n_q"][0]["paired"]  # the RL agent's budget only
    assert "rl_best_of_n_q" not in summary["best_of_n_q"][1]["paired"]
    assert script.compare(f"{out}:best_of_n_q", f"{out}:majority_vote") == [
        {"budget": p["budget"], **p["paired"]["majority_vote"]} for p in summary["best_of_n_q"]
    ]
    with pytest.raises(ValueError, match="no 'mcts_q' rows"):
        script.compare(f"{out}:mcts_q", f"{out}:majority_vote")
    other = json.loads(out.read_text())
    other["problems"] = 3
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="different problems"):
        script.compare(f"{out}:best_of_n_q", f"{tmp_path / 'other.json'}:best_of_n_q")
    with pytest.raises(SystemExit):  # a missing agent file is an error before any work
        script.main([*common, "--rl-agents", str(tmp_path / "missing.zip")])
    # --summarize recomputes the summary from the runs alone: the same report comes back
    before = out.read_text()
    out.with_suffix(".png").unlink()
    script.main(["--summarize", str(out)])
    assert json.loads(out.read_text()) == json.loads(before) and out.with_suffix(".png").is_file()
    with pytest.raises(SystemExit):
        script.main(["--summarize", str(tmp_path / "missing.json")])


def test_the_script_searches_from_an_rl_agents_policy(benchmark_script, q_model_dir: Path, tmp_path: Path) -> None:
    script = benchmark_script("search_scaling")
    _save_prior_agent(q_model_dir, tmp_path / "agent.zip")
    out = tmp_path / "scaling.json"
    common = ["--model", str(q_model_dir), "--env", ENV, "--problems", "2", "--seeds", "0", "--budgets", "1",
              "--mcts-budgets", "2", "--max-tokens", "10", "--n-envs", "2", "--rl-budgets", "1",
              "--rollout-policy", "greedy", "--out", str(out)]  # fmt: skip
    with pytest.raises(SystemExit):  # nothing to search from
        script.main([*common, "--rl-search"])
    script.main([*common, "--rl-agents", str(tmp_path / "agent.zip"), "--rl-search"])
    report = json.loads(out.read_text())
    (point,) = report["summary"]["rl_mcts_q"]
    assert point["budget"] == 2 and point["tokens"] > 0 and 0.0 <= point["accuracy"] <= 1.0
    assert "mcts_q" not in report["summary"]  # 2x is not a sampling budget here: only the RL search ran there
    # an untrained prior policy is the CoLA prior: its search is the prior's search
    run = report["runs"][0]
    prior_point = script.mcts_point(argparse.Namespace(**report["settings"]), 0, round(2 * run["greedy_tokens"]),
                                    "q_network")  # fmt: skip
    searched = run["budgets"]["2"]["rl_mcts_q"]
    assert prior_point["successes"] == searched["successes"]
    assert prior_point["tokens_per_problem"] == searched["tokens_per_problem"]
    before = out.read_text()
    script.main(["--summarize", str(out)])  # the searched budget survives a recomputed summary
    assert json.loads(out.read_text()) == json.loads(before)


def test_the_ci_resamples_problems_not_seeds(benchmark_script) -> None:
    """Three seeds of a deterministic method repeat one seed's answers: the CI must not narrow."""
    script = benchmark_script("search_scaling")
    answers = [True, False] * 32
    one, three = script.bootstrap_ci(np.array([answers])), script.bootstrap_ci(np.array([answers] * 3))
    assert one == three and one[0] < 0.5 - 0.08 and one[1] > 0.5 + 0.08  # +-12 points at 64 problems
    varied = np.array([answers, answers[::-1], answers])  # seeds that disagree average per problem
    low, high = script.bootstrap_ci(varied)
    assert low < 0.5 < high and high - low < one[1] - one[0]


def test_a_paired_difference_cancels_what_both_methods_share(benchmark_script) -> None:
    """Right on the same 32 of 64 problems, one method also on 6 more: +9.4 points, and a CI that
    excludes 0 although each method's own CI (+-12 points) contains the other's mean."""
    script = benchmark_script("search_scaling")
    base = np.array([[True] * 32 + [False] * 32])
    better = base.copy()
    better[0, 32:38] = True
    paired = script.paired_difference(np.repeat(better, 3, axis=0), base)  # three seeds repeating one
    assert paired["difference"] == pytest.approx(6 / 64) and 0 < paired["ci"][0] < 6 / 64 < paired["ci"][1]
    assert script.bootstrap_ci(better)[0] < base.mean()
    assert script.paired_difference(base, base) == {"difference": 0.0, "ci": [0.0, 0.0]}
    with pytest.raises(ValueError, match="same problems"):
        script.paired_difference(base, base[:, :10])


def test_the_script_resumes_after_the_last_seed_it_wrote(benchmark_script, q_model_dir: Path, tmp_path: Path) -> None:
    script = benchmark_script("search_scaling")
    common = ["--model", str(q_model_dir), "--env", ENV, "--problems", "2", "--budgets", "1", "2",
              "--mcts-budgets", "1", "--max-tokens", "10", "--n-envs", "2", "--rollout-policy", "greedy"]  # fmt: skip
    whole, resumed = tmp_path / "whole.json", tmp_path / "resumed.json"
    script.main([*common, "--seeds", "0", "1", "--out", str(whole)])
    script.main([*common, "--seeds", "0", "--out", str(resumed)])  # a run stopped after its first seed
    stopped = json.loads(resumed.read_text())
    script.main([*common, "--seeds", "0", "1", "--out", str(resumed)])
    report, expected = json.loads(resumed.read_text()), json.loads(whole.read_text())
    assert report["runs"][0] == stopped["runs"][0]  # seed 0 kept, not redone
    assert [run["seed"] for run in report["runs"]] == [0, 1]
    for run, same in zip(report["runs"], expected["runs"], strict=True):
        for key in ("greedy", "greedy_tokens", "q_auc_within_problem"):
            assert run[key] == same[key]
        assert run["budgets"]["1"]["best_of_n_q"] == same["budgets"]["1"]["best_of_n_q"]
        assert run["budgets"]["1"]["mcts_q"]["successes"] == same["budgets"]["1"]["mcts_q"]["successes"]

    def outcomes(summary: dict) -> dict:  # what was found and at what cost (not how fast)
        return {method: [(p["budget"], p["accuracy"], p["ci"], p["tokens"]) for p in points]
                for method, points in summary.items()}  # fmt: skip

    assert outcomes(report["summary"]) == outcomes(expected["summary"])
    for other in (["--seeds", "1", "0"], ["--seeds", "0", "1", "--max-tokens", "8"]):  # other seeds or settings
        with pytest.raises(SystemExit):
            script.main([*common, *other, "--out", str(resumed)])
    resumed.write_text("not a report")
    with pytest.raises(SystemExit):
        script.main([*common, "--seeds", "0", "--out", str(resumed)])
    assert resumed.read_text() == "not a report"


def test_the_tree_shape_options_reach_the_search(benchmark_script, q_model_dir: Path, tmp_path: Path) -> None:
    """``--exploration-constant``, ``--root-width``, ``--node-width`` and ``--macro-td-threshold`` set
    the searches' ``MCTSConfig``; left out, its defaults hold; a bad value is an error before any work."""
    script = benchmark_script("search_scaling")
    parser_args = ["--model", str(q_model_dir), "--env", ENV, "--problems", "2", "--budgets", "1",
                   "--mcts-budgets", "1", "--max-tokens", "10", "--n-envs", "2", "--seeds", "0"]  # fmt: skip
    args = _args(q_model_dir)
    for name in script.TREE_SHAPE:
        setattr(args, name, None)
    args.simulations, args.parallel_expansions, args.stop_on_finished_answer = 64, 4, False
    args.merge_aliases, args.rollout_policy, args.rollout_temperature = True, "greedy", 1.0
    args.reuse_greedy_rollouts = False
    defaults = MCTSConfig()
    plain = script.mcts_config(args, seed=0, budget=20, leaf_value="q_network")
    assert [getattr(plain, name) for name in script.TREE_SHAPE] == [getattr(defaults, n) for n in script.TREE_SHAPE]
    shape = {"exploration_constant": 2.0, "root_width": 3, "node_width": 4, "macro_td_threshold": 0.0}
    for name, value in shape.items():
        setattr(args, name, value)
    shaped = script.mcts_config(args, seed=0, budget=20, leaf_value="q_network")
    assert {name: getattr(shaped, name) for name in script.TREE_SHAPE} == shape
    assert shaped.token_budget == 20 and shaped.leaf_q == "last" and not shaped.reuse_greedy_rollouts

    out = tmp_path / "shaped.json"
    script.main([*parser_args, "--node-width", "4", "--macro-td-threshold", "0", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["settings"]["node_width"] == 4 and report["settings"]["root_width"] is None
    assert report["runs"][0]["budgets"]["1"]["mcts_q"]["nodes_per_search"] >= 1
    for bad in (["--node-width", "0"], ["--exploration-constant", "-1"], ["--macro-td-threshold", "-0.5"]):
        with pytest.raises(SystemExit):
            script.main([*parser_args, *bad, "--out", str(tmp_path / "bad.json")])
    assert not (tmp_path / "bad.json").exists()
