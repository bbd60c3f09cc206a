"""The benchmark protocol end to end on a tiny model: suites, resumable runs, launchers, rliable report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cola_agents.benchmark import Suite, TaskSpec, load_suite, run_suite, write_report
from cola_agents.benchmark.report import build_report, score_matrices
from cola_agents.benchmark.runner import RunFileError
from cola_agents.benchmark.suite import AlgorithmSpec, parse_algorithms, training_id
from cola_agents.cli import main

ALGORITHMS = (
    AlgorithmSpec("grpo", "grpo", hyperparameters={"group_size": 2, "learning_rate": 1e-2}),
    AlgorithmSpec("ppo", "ppo", hyperparameters={"n_steps": 4, "batch_size": 8, "n_epochs": 1}, prior_kl_coef=0.1),
    AlgorithmSpec("grpo-token", "grpo", actions="token", hyperparameters={"group_size": 2}),
)


@pytest.fixture
def suite(tiny_cola_dir: Path) -> Suite:
    task = TaskSpec(train="CoLA-Countdown-Easy-Train-v0", eval="CoLA-Countdown-Easy-v0")
    return Suite((task,), ALGORITHMS, seeds=(0, 1), budget=16, eval_points=1, eval_problems=4, n_envs=4,
                 env_kwargs={"model": str(tiny_cola_dir), "max_episode_steps": 4})  # fmt: skip


def test_suite_runs_every_run_and_reports_with_cis(suite: Suite, tmp_path: Path) -> None:
    results = run_suite(suite, tmp_path, show_progress=False)
    assert [r["name"] for r in results] == [run.name for run in suite.runs()]
    assert len(results) == 6
    for result in results:
        assert result["finished"]
        assert [p["budget"] for p in result["curve"]] == [0, 16]
        assert result["curve"][0]["env_tokens"] == 0 and result["curve"][-1]["env_tokens"] >= 16
        assert all(len(p["successes"]) == 4 and 0.0 <= p["success_rate"] <= 1.0 for p in result["curve"])
        assert list((tmp_path / "tensorboard" / result["name"]).rglob("events.out.tfevents.*"))
    token = next(r for r in results if r["name"].startswith("grpo-token"))
    assert (
        token["train_id"] == "CoLA-Countdown-Easy-Train-Token-v0" and token["eval_id"] == "CoLA-Countdown-Easy-Token-v0"
    )

    paths = write_report(tmp_path, reps=200)
    report = json.loads(paths["json"].read_text())
    for name in ("grpo", "ppo", "grpo-token"):
        final = report["final"][name]
        assert final["runs"] == 2 and final["iqm_ci"][0] <= final["iqm"] <= final["iqm_ci"][1]
        assert len(report["curves"][name]) == 2
    assert "P(grpo > ppo)" in report["probability_of_improvement"]
    table = paths["markdown"].read_text()
    assert table.count("| grpo") == 2 and "95 %" in table
    assert paths["curves"].stat().st_size > 10_000 and paths["profile"].is_file()


def test_a_killed_suite_resumes_where_it_stopped(suite: Suite, tmp_path: Path) -> None:
    small = Suite(suite.tasks, suite.algorithms[:1], seeds=(0,), budget=32, eval_points=2, eval_problems=4, n_envs=4,
                  env_kwargs=suite.env_kwargs)  # fmt: skip
    [first] = run_suite(small, tmp_path, show_progress=False)
    path = tmp_path / "runs" / f"{first['name']}.json"
    # as if killed after the second evaluation: the last point and the end mark are missing
    killed = {**first, "finished": False, "curve": first["curve"][:2]}
    path.write_text(json.dumps(killed))
    [resumed] = run_suite(small, tmp_path, show_progress=False)
    assert resumed["finished"] and [p["budget"] for p in resumed["curve"]] == [0, 16, 32]
    assert resumed["curve"][:2] == first["curve"][:2]  # kept, not rerun
    assert resumed["curve"][2]["env_tokens"] >= 32
    before = path.stat().st_mtime_ns
    run_suite(small, tmp_path, show_progress=False)  # finished: nothing runs
    assert path.stat().st_mtime_ns == before
    path.write_text("{ half a file")  # unreadable: the run starts again
    [again] = run_suite(small, tmp_path, show_progress=False)
    assert again["finished"] and len(again["curve"]) == 3


def test_local_processes_and_ray_run_the_same_grid(suite: Suite, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    small = Suite(suite.tasks, suite.algorithms[:1], seeds=(0, 1), budget=16, eval_points=1, eval_problems=2, n_envs=2,
                  env_kwargs=suite.env_kwargs)  # fmt: skip
    in_processes = run_suite(small, tmp_path / "local", workers=2, show_progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_suite(small, tmp_path / "ray", launcher="ray", show_progress=False)
    finally:
        ray.shutdown()
    assert [r["name"] for r in on_ray] == [r["name"] for r in in_processes]
    for a, b in zip(in_processes, on_ray, strict=True):
        assert a["finished"] and b["finished"]
        assert a["curve"][0]["successes"] == b["curve"][0]["successes"]  # same start, same held-out problems


def test_local_workers_end_when_their_runner_is_killed(tmp_path: Path) -> None:
    """A runner killed outright (no chance to stop its pool) leaves no worker going on with its run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "runner.py"
    script.write_text(
        "import multiprocessing, os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from cola_agents.benchmark.runner import exit_with_parent\n"
        "if __name__ == '__main__':\n"
        "    context = multiprocessing.get_context('spawn')\n"
        "    watch = {'initializer': exit_with_parent, 'initargs': (os.getpid(), 0.2)}\n"
        "    pool = ProcessPoolExecutor(1, mp_context=context, **watch)\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    pool.submit(time.sleep, 60)\n"
        "    time.sleep(60)\n"
    )
    runner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert runner.stdout is not None
    worker = int(runner.stdout.readline())
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the worker outlived its runner")


def test_score_matrices_keep_seeds_shared_by_every_task() -> None:
    def result(task: str, seed: int, scores: list[float], finished: bool = True) -> dict:
        curve = [{"budget": 10 * i, "success_rate": s} for i, s in enumerate(scores)]
        run = {"algorithm": {"name": "grpo"}, "seed": seed}
        return {"run": run, "eval_id": task, "curve": curve, "finished": finished}

    results = [result("A", 0, [0.1, 0.5]), result("A", 1, [0.2, 0.6]), result("B", 0, [0.0, 0.3]),
               result("B", 1, [0.0, 0.9], finished=False)]  # fmt: skip
    np.testing.assert_allclose(score_matrices(results, 0)["grpo"], [[0.1, 0.0], [0.2, 0.0]])
    np.testing.assert_allclose(score_matrices(results, -1)["grpo"], [[0.5, 0.3]])  # seed 1 of B is unfinished
    report = build_report(results, reps=100)
    assert report["start"]["grpo"]["runs"] == 4 and report["final"]["grpo"]["runs"] == 2
    with pytest.raises(ValueError, match="no run results"):
        build_report([])


def test_suite_files_and_their_errors(tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    path.write_text(
        'budget = 100\nseeds = [3]\ntask = ["CoLA-Countdown-Easy-v0"]\n'
        '[algorithms.grpo]\ngroup_size = 4\n[algorithms.ppo-token]\nalgorithm = "ppo"\nactions = "token"\n'
    )
    suite = load_suite(path, eval_problems=8)
    assert suite.tasks == (TaskSpec("CoLA-Countdown-Easy-Train-v0", "CoLA-Countdown-Easy-v0"),)
    assert suite.budget == 100 and suite.seeds == (3,) and suite.eval_problems == 8
    assert [(a.name, a.algorithm, a.actions) for a in suite.algorithms] == [("grpo", "grpo", "latent"),
                                                                          ("ppo-token", "ppo", "token")]  # fmt: skip
    assert suite.algorithms[0].hyperparameters == {"group_size": 4}
    assert suite.eval_budgets == (0, 20, 40, 60, 80, 100)
    assert training_id("CoLA-Math500-v0") == "CoLA-Math500-v0"  # no training twin: itself
    assert [a.actions for a in parse_algorithms(["grpo", "ppo-token"])] == ["latent", "token"]
    cases = {
        'budget = 1\ntask = ["CoLA-Countdown-Easy-v0"]\nlearning_rate = 1\n[algorithms.grpo]\n': "unknown fields",
        'task = ["CoLA-Countdown-Easy-v0"]\n[algorithms.sac]\n': "unknown algorithm",
        'task = ["CoLA-Countdown-Easy-v0"]\n[algorithms.grpo]\nactions = "words"\n': "actions must be",
        "task = [\n": "not valid TOML",
        "[algorithms.grpo]\n": "at least one task",
        'task = [{ train = "CoLA-Countdown-Easy-Train-v0" }]\n[algorithms.grpo]\n': "needs eval",
        'task = ["CoLA-Countdown-Easy-v0"]\n[algorithms.grpo]\ngroup_sise = 4\n': "no hyperparameter 'group_sise'",
        'task = ["CoLA-Countdown-Easy-v0"]\n[algorithms.grpo]\nlearning_rate = "fast"\n': "learning_rate must be float",
        'task = ["CoLA-Countdown-Easy-v0"]\n[algorithms.ppo]\nseed = 3\n': "set by the runner",
        'budget = "lots"\ntask = ["CoLA-Countdown-Easy-v0"]\n[algorithms.grpo]\n': "budget must be an integer",
        'budget = 64.5\ntask = ["CoLA-Countdown-Easy-v0"]\n[algorithms.grpo]\n': "budget must be an integer",
        'seeds = [0, 0]\ntask = ["CoLA-Countdown-Easy-v0"]\n[algorithms.grpo]\n': "seeds must be different",
        'seeds = [-1]\ntask = ["CoLA-Countdown-Easy-v0"]\n[algorithms.grpo]\n': "seed must be an integer >= 0",
        'task = ["CoLA-Countdown-Easy-v0"]\n[algorithms."../../../tmp/x"]\nalgorithm = "grpo"\n': "plain name",
        'task = ["CoLA-Countdown-Easy-v0"]\n[algorithms.grpo]\nprior_kl_coef = "a lot"\n': "prior_kl_coef must be",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_suite(path)
    with pytest.raises(FileNotFoundError):
        load_suite(tmp_path / "missing.toml")
    path.write_text('task = ["CoLA-Nothing-v0"]\n[algorithms.grpo]\n')
    with pytest.raises(ValueError, match="not a registered"):
        run_suite(load_suite(path), tmp_path / "out", show_progress=False)
    path.write_text('eval_problems = 300\ntask = ["CoLA-Countdown-Easy-v0"]\n[algorithms.grpo]\n')
    with pytest.raises(ValueError, match="eval_problems = 300 but CoLA-Countdown-Easy-v0 has 256"):
        run_suite(load_suite(path), tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out" / "runs").exists()  # refused before anything ran


def test_bad_run_files_are_named_refused_by_the_report_and_rerun_by_the_runner(suite: Suite, tmp_path: Path) -> None:
    small = Suite(suite.tasks, suite.algorithms[:1], seeds=(0, 1), budget=8, eval_points=1, eval_problems=2,
                  n_envs=2, env_kwargs=suite.env_kwargs)  # fmt: skip
    first, second = run_suite(small, tmp_path, show_progress=False)
    runs = tmp_path / "runs"
    path = runs / f"{first['name']}.json"
    good = path.read_text()
    tampered = {
        "success rate 7.5": {**first, "curve": [{**first["curve"][0], "success_rate": 7.5}, *first["curve"][1:]]},
        "finished with an empty curve": {**first, "curve": []},
        "another seed's spec": {**first, "run": second["run"], "name": second["name"]},
        "spec changed": {**first, "run": {**first["run"], "budget": 16}},
    }
    for why, data in [*tampered.items(), ("truncated", None)]:
        path.write_text(good[: len(good) // 2] if data is None else json.dumps(data))
        with pytest.raises(RunFileError, match=path.name):
            write_report(tmp_path, reps=50)
        assert main(["benchmark", "report", "--runs", str(tmp_path), "--reps", "50"]) == 2, why
        with pytest.warns(UserWarning, match=path.name):
            report = json.loads(write_report(tmp_path, reps=50, skip_bad=True)["json"].read_text())
        assert report["final"]["grpo"]["runs"] == 1, why  # the other run is still reported
    path.write_text(json.dumps(tampered["finished with an empty curve"]))
    [rerun, kept] = run_suite(small, tmp_path, show_progress=False)
    assert rerun["finished"] and len(rerun["curve"]) == 2
    assert json.dumps(kept, sort_keys=True) == json.dumps(second, sort_keys=True)  # the good run is not redone
    assert (runs / f"{first['name']}.json.bad").is_file()  # nothing lost: the bad file is kept beside
    assert json.loads(write_report(tmp_path, reps=50)["json"].read_text())["final"]["grpo"]["runs"] == 2


def test_benchmark_command_runs_and_reports(tiny_cola_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    args = ["benchmark", "run", "--env", "CoLA-Countdown-Easy-v0", "--algo", "grpo", "--budget", "8",
            "--eval-points", "1", "--eval-problems", "2", "--n-envs", "2", "--seeds", "0", "--model",
            str(tiny_cola_dir), "--out", str(out), "--reps", "100", "--max-steps", "4"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 runs" in printed and "| grpo |" in printed
    assert main(["benchmark", "report", "--runs", str(out), "--out", str(tmp_path / "report"), "--reps", "100"]) == 0
    assert (tmp_path / "report" / "learning_curves.png").is_file()
    assert main(["benchmark", "run", "--suite", "x.toml", "--env", "CoLA-Countdown-Easy-v0", "--out", str(out)]) == 2
    assert main(["benchmark", "report", "--runs", str(tmp_path / "nothing")]) == 2
    assert "no runs in" in capsys.readouterr().err


def test_local_workers_take_the_gpus_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from cola_agents.benchmark.runner import worker_devices

    monkeypatch.delenv("COLA_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert worker_devices(3) == ["cuda:0", "cuda:1", "cuda:0"]
    monkeypatch.setenv("COLA_DEVICE", "cpu")  # the user chose: every run follows it
    assert worker_devices(2) == [None, None]
    monkeypatch.delenv("COLA_DEVICE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker_devices(2) == [None, None]


def test_benchmark_run_takes_the_decoder_placement(monkeypatch: pytest.MonkeyPatch) -> None:
    from cola_agents.cli import build_parser
    from cola_agents.cli.benchmark import _suite

    argv = ["benchmark", "run", "--env", "CoLA-Countdown-Easy-v0", "--algo", "grpo", "--out", "unused",
            "--quantization", "8bit", "--dtype", "bfloat16", "--device", "cuda:1", "--gpus-per-run", "0.5"]  # fmt: skip
    args = build_parser().parse_args(argv)
    assert args.device == "cuda:1" and args.gpus_per_run == 0.5
    suite = _suite(args)
    assert suite.env_kwargs == {"quantization": "8bit", "dtype": "bfloat16"}  # the device is not part of a run
    plain = _suite(build_parser().parse_args(argv[:8]))
    assert plain.env_kwargs == {}


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[2] / "benchmarks" / "suites").glob("*.toml")), ids=lambda p: p.name
)
def test_every_shipped_suite_loads_and_names_registered_ids(path: Path) -> None:
    suite = load_suite(path)
    suite.check_ids()  # ids registered, eval_problems within each evaluation id's problems
    assert suite.runs() and len({run.name for run in suite.runs()}) == len(suite.runs())
