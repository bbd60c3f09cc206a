"""Runs a suite: every (algorithm, task, seed) trained and evaluated at fixed budget points.

Each run writes ``runs/<name>.json`` (its learning curve: held-out success and return at each
budget point) and keeps its agent in ``checkpoints/<name>/`` after every evaluation, so a
killed suite resumes where it stopped: finished runs are skipped, an unfinished run reloads
its last checkpoint (policy and optimizer) and goes on from that budget point. TensorBoard
logs go to ``tensorboard/<name>/``.

Runs are independent: the local launcher runs them in ``workers`` processes (in this process
when ``workers=1``), the Ray launcher as tasks of an existing Ray cluster (``ray.init(address)``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cola_agents.benchmark.suite import RunSpec, Suite

Launcher = str
LAUNCHERS = ("local", "ray")


def run_path(out: str | os.PathLike[str], run: RunSpec) -> Path:
    """Where ``run``'s result JSON lives under a suite's output folder."""
    return Path(out) / "runs" / f"{run.name}.json"


def read_result(path: Path) -> dict[str, Any] | None:
    """A run's result, or ``None`` when missing or unreadable (a run killed while writing it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("curve"), list) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(data, indent=1), encoding="utf-8")
    partial.replace(path)  # atomic: a reader never sees half a file


def _env_ids(run: RunSpec) -> tuple[str, str]:
    from cola_gym.registration import token_twin_id

    if run.algorithm.actions == "token":
        return token_twin_id(run.task.train), token_twin_id(run.task.eval)
    return run.task.train, run.task.eval


def make_agent(run: RunSpec, env: Any, tensorboard_log: str | None) -> Any:
    """The run's algorithm on ``env``, starting from the prior (the CoLA policy or, for token twins, the decoder)."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import A2C, PPO

    from cola_agents.algorithms import GRPO
    from cola_agents.policies import CoLAMaskablePriorPolicy, CoLAPriorPolicy

    classes: dict[str, tuple[Any, Any]] = {
        "ppo": (PPO, CoLAPriorPolicy),
        "a2c": (A2C, CoLAPriorPolicy),
        "maskable_ppo": (MaskablePPO, CoLAMaskablePriorPolicy),
        "grpo": (GRPO, "MlpPolicy"),
    }
    cls, policy = classes[run.algorithm.algorithm]
    kwargs = dict(run.algorithm.hyperparameters)
    return cls(policy, env, seed=run.seed, tensorboard_log=tensorboard_log, **kwargs)


def algorithm_class(run: RunSpec) -> Any:
    """The class whose ``load`` restores ``run``'s checkpoints."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import A2C, PPO

    from cola_agents.algorithms import GRPO

    return {"ppo": PPO, "a2c": A2C, "maskable_ppo": MaskablePPO, "grpo": GRPO}[run.algorithm.algorithm]


def run_one(run: RunSpec, out: str | os.PathLike[str], show_progress: bool = False) -> dict[str, Any]:
    """Trains and evaluates ``run`` (resuming it); returns its result (also in ``runs/<name>.json``).

    Each evaluation plays every held-out problem twice: sampling from the agent's policy (the
    policy RL optimises: ``success_rate``, ``mean_return``, ...) and greedily
    (``greedy_success_rate``).
    """
    import torch

    from cola_agents.evaluation import evaluate
    from cola_agents.sb3 import make_sb3_env

    out = Path(out)
    path = run_path(out, run)
    result = read_result(path)
    if result is not None and result.get("finished"):
        return result
    train_id, eval_id = _env_ids(run)
    env_kwargs = {"observation": "hidden+prior", **run.env_kwargs}
    if run.algorithm.prior_kl_coef:
        env_kwargs["prior_kl_coef"] = run.algorithm.prior_kl_coef
    env = make_sb3_env(train_id, n_envs=run.n_envs, seed=run.seed, **env_kwargs)
    checkpoint = out / "checkpoints" / run.name / "agent.zip"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    tensorboard = str(out / "tensorboard" / run.name)
    if result is not None and checkpoint.is_file():
        agent = algorithm_class(run).load(checkpoint, env=env, tensorboard_log=tensorboard)
        curve = result["curve"]
    else:
        agent = make_agent(run, env, tensorboard)
        curve = []
    seconds = float(result["train_seconds"]) if curve and result is not None else 0.0
    result = {"run": run.to_json(), "name": run.name, "train_id": train_id, "eval_id": eval_id,
              "curve": curve, "finished": False, "train_seconds": seconds}  # fmt: skip
    eval_kwargs = {k: v for k, v in env_kwargs.items() if k != "prior_kl_coef"}
    done = {point["budget"] for point in curve}
    for budget in run.eval_budgets:
        if budget in done:
            continue
        if budget > agent.num_timesteps:
            started = time.perf_counter()
            agent.learn(budget - agent.num_timesteps, reset_num_timesteps=not curve, tb_log_name="train",
                        progress_bar=show_progress)  # fmt: skip
            result["train_seconds"] += time.perf_counter() - started
        problems, batch = range(run.eval_problems), min(run.n_envs, run.eval_problems)
        torch.manual_seed(run.seed * 1_000_003 + budget)  # the sampled evaluation is reproducible
        sampled = evaluate(agent, eval_id, problems, n_envs=batch, deterministic=False, **eval_kwargs)
        greedy = evaluate(agent, eval_id, problems, n_envs=batch, deterministic=True, **eval_kwargs)
        rewarded = sum(r > 0 for r in sampled.rewards) / len(sampled.rewards)  # any credit (e.g. format)
        curve.append({"budget": budget, "env_tokens": int(agent.num_timesteps), **sampled.summary(),
                      "rewarded_rate": rewarded, "successes": [bool(s) for s in sampled.successes],
                      "greedy_success_rate": greedy.success_rate,
                      "greedy_successes": [bool(s) for s in greedy.successes]})  # fmt: skip
        agent.save(checkpoint)
        _write_json(path, result)
    result["finished"] = True
    _write_json(path, result)
    env.close()
    return result


def _run_in_worker(run: RunSpec, out: str, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)  # runs side by side share the cores instead of fighting for them
    return run_one(run, out)


def run_suite(
    suite: Suite,
    out: str | os.PathLike[str],
    launcher: Launcher = "local",
    workers: int = 1,
    ray_address: str | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """Runs every run of ``suite`` not finished yet under ``out``; returns all their results.

    Args:
        suite: the suite.
        out: output folder (``suite.json``, ``runs/``, ``checkpoints/``, ``tensorboard/``).
        launcher: ``"local"`` (processes on this machine) or ``"ray"`` (tasks of a Ray cluster).
        workers: local: runs at once (1: in this process, one after another); ray: ignored
            (the cluster schedules one CPU per run).
        ray_address: the cluster to join (``None``: ``RAY_ADDRESS``, else a local Ray).
        on_result: called with each result as it arrives.
        show_progress: a progress bar over the runs (and, in-process, over each run's steps).
    """
    from tqdm import tqdm

    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    suite.check_ids()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "suite.json", {"runs": [r.to_json() for r in suite.runs()], "curve": []})
    runs = suite.runs()
    results: dict[str, dict[str, Any]] = {}
    pending: list[RunSpec] = []
    for run in runs:
        found = read_result(run_path(out, run))
        if found is not None and found.get("finished"):
            results[run.name] = found
        else:
            pending.append(run)
    bar = tqdm(total=len(runs), initial=len(results), desc="benchmark runs", unit="run", disable=not show_progress)

    def arrived(result: dict[str, Any]) -> None:
        results[result["name"]] = result
        bar.update(1)
        if on_result is not None:
            on_result(result)

    if launcher == "ray":
        _run_on_ray(pending, str(out), ray_address, arrived)
    elif workers == 1:
        for run in pending:
            arrived(run_one(run, out, show_progress=show_progress))
    else:
        _run_in_processes(pending, str(out), workers, arrived)
    bar.close()
    return [results[run.name] for run in runs]


def _run_in_processes(
    runs: Sequence[RunSpec], out: str, workers: int, arrived: Callable[[dict[str, Any]], None]
) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # no forked torch threads or model copies
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_run_in_worker, run, out, threads) for run in runs]
        for future in as_completed(futures):
            arrived(future.result())


def _run_on_ray(
    runs: Sequence[RunSpec], out: str, address: str | None, arrived: Callable[[dict[str, Any]], None]
) -> None:
    try:
        import ray
    except ImportError as err:
        raise ImportError("--launcher ray needs Ray: pip install 'cola-gym[ray]'") from err
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(_run_in_worker)
    pending = [remote.remote(run, out, 1) for run in runs]
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        arrived(ray.get(ready[0]))
