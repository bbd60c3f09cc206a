"""A user's own algorithm joins a suite and its leaderboard by ``module:Class``; crashed runs are recorded."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cola_agents.algorithms import algorithm_entry
from cola_agents.benchmark.suite import AlgorithmSpec, parse_algorithms
from cola_agents.cli import main

USER_MODULE = '''
"""A user's own algorithm, in their own module: REINFORCE on SB3's on-policy machinery."""

from gymnasium import spaces
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm


class Reinforce(OnPolicyAlgorithm):
    """REINFORCE: the policy gradient of whole-episode returns, no critic."""

    def __init__(self, policy, env, learning_rate=1e-3, n_steps=8, seed=None, tensorboard_log=None,
                 device="auto", _init_setup_model=True):
        super().__init__(policy, env, learning_rate=learning_rate, n_steps=n_steps, gamma=1.0, gae_lambda=1.0,
                         ent_coef=0.0, vf_coef=0.0, max_grad_norm=0.5, use_sde=False, sde_sample_freq=-1,
                         seed=seed, tensorboard_log=tensorboard_log, device=device,
                         _init_setup_model=_init_setup_model, supported_action_spaces=(spaces.Discrete,))

    def train(self):
        self._update_learning_rate(self.policy.optimizer)
        for batch in self.rollout_buffer.get():
            _, log_prob, _ = self.policy.evaluate_actions(batch.observations, batch.actions.long().flatten())
            loss = -(batch.returns * log_prob).mean()
            self.policy.optimizer.zero_grad()
            loss.backward()
            self.policy.optimizer.step()


class Diverges(Reinforce):
    """Crashes at its first update."""

    def train(self):
        raise FloatingPointError("loss is nan")
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / "my_algos.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    yield "my_algos"
    sys.modules.pop("my_algos", None)


@pytest.fixture
def suite_file(tiny_cola_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(
        "budget = 8\neval_points = 1\neval_problems = 2\nseeds = [0]\nn_envs = 2\n"
        'task = ["CoLA-Countdown-Easy-v0"]\n'
        f'[env_kwargs]\nmodel = "{tiny_cola_dir}"\nmax_episode_steps = 4\n'
        "[algorithms.grpo]\ngroup_size = 2\n"
    )
    return path


def test_a_users_algorithm_joins_the_leaderboard_in_one_command(
    user_module: str, suite_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, board = tmp_path / "results", tmp_path / "LEADERBOARD.md"
    assert main(["benchmark", "run", "--suite", str(suite_file), "--out", str(out), "--reps", "50"]) == 0
    argv = ["benchmark", "run", "--suite", str(suite_file), "--algo", f"{user_module}:Reinforce", "--out", str(out),
            "--reps", "50", "--leaderboard", str(board)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["cola-gym", *argv])
    assert main(argv) == 0
    result = json.loads((out / "runs" / "Reinforce__Countdown-Easy__seed0.json").read_text())
    assert result["finished"] and result["run"]["algorithm"]["algorithm"] == "my_algos:Reinforce"
    assert result["curve"][-1]["env_tokens"] >= 8 and "--algo my_algos:Reinforce" in result["command"]
    text = board.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert sorted(row.split(" | ")[1] for row in rows) == ["Reinforce", "grpo"]  # beside the suite's own
    assert "`my_algos:Reinforce`" in text and "Countdown-Easy" in text.splitlines()[4]
    assert "Reinforce: `cola-gym benchmark run --suite" in text  # the command that produced the row
    assert "failed" not in text


def test_a_crashing_run_is_recorded_reported_and_retried(
    user_module: str, suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    argv = ["benchmark", "run", "--suite", str(suite_file), "--algo", "grpo", "--algo", f"{user_module}:Diverges",
            "--out", str(out), "--reps", "50", "--leaderboard", str(tmp_path / "board.md")]  # fmt: skip
    assert main(argv) == 1  # the suite went on, and says one run failed
    printed = capsys.readouterr().out
    assert "1 run(s) failed (Diverges__Countdown-Easy__seed0)" in printed
    path = out / "runs" / "Diverges__Countdown-Easy__seed0.json"
    failed = json.loads(path.read_text())
    assert not failed["finished"] and failed["failed"]["error"] == "FloatingPointError: loss is nan"
    assert "my_algos.py" in failed["failed"]["traceback"] and len(failed["curve"]) == 1  # its start is kept
    assert json.loads((out / "runs" / "grpo__Countdown-Easy__seed0.json").read_text())["finished"]
    for report in (out / "report.md", tmp_path / "board.md"):
        assert "`Diverges__Countdown-Easy__seed0`: FloatingPointError: loss is nan" in report.read_text()
    before = path.stat().st_mtime_ns
    assert main(argv) == 1  # tried again (and failing again), the finished run left alone
    assert path.stat().st_mtime_ns != before


def test_user_algorithms_by_class_path_and_their_errors(user_module: str) -> None:
    entry = algorithm_entry(f"{user_module}:Reinforce")
    assert entry.prior_policy == "cola_agents.policies:CoLAPriorPolicy"  # an actor-critic starts as the prior
    assert entry.summary == "REINFORCE: the policy gradient of whole-episode returns, no critic."
    [latent, token] = parse_algorithms([f"{user_module}:Reinforce", f"{user_module}:Reinforce-token"])
    assert (latent.name, latent.actions, token.name, token.actions) == (
        "Reinforce",
        "latent",
        "Reinforce-token",
        "token",
    )
    with pytest.raises(ValueError, match="cannot import"):
        algorithm_entry("no_such_module:Algo")
    with pytest.raises(ValueError, match="cannot import"):
        algorithm_entry(f"{user_module}:Missing")
    with pytest.raises(ValueError, match="not an algorithm class"):
        algorithm_entry("json:dumps")
    with pytest.raises(ValueError, match="has no hyperparameter 'gae_lambda'"):
        AlgorithmSpec("r", f"{user_module}:Reinforce", hyperparameters={"gae_lambda": 0.9})
