"""Runs a suite: every (algorithm, task, seed) trained and evaluated at fixed budget points.

Each run writes ``runs/<name>.json`` (its learning curve: held-out success and return at each
budget point) and keeps its agent in ``checkpoints/<name>/`` after every evaluation, so a
killed suite resumes where it stopped: finished runs are skipped, an unfinished run reloads
its last checkpoint (policy and optimizer) and goes on from that budget point. TensorBoard
logs go to ``tensorboard/<name>/``. A run that crashes does not stop the suite: its file records
the error (``failed``), the report lists it, and the next run of the suite tries it again.

Runs are independent: the local launcher runs them in ``workers`` processes (in this process
when ``workers=1``; on a GPU machine each process takes the machine's GPUs in turn), the Ray
launcher as tasks of an existing Ray cluster (``ray.init(address)``), each asking for one CPU
and, on a cluster with GPUs, a GPU share (Ray hides the GPUs from a task that asks for none).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cola_agents import algorithms
from cola_agents.benchmark.suite import AlgorithmSpec, RunSpec, Suite, TaskSpec
from cola_gym.model.decoders import DEVICE_VARIABLE

logger = logging.getLogger(__name__)

Launcher = str
LAUNCHERS = ("local", "ray")


def run_path(out: str | os.PathLike[str], run: RunSpec) -> Path:
    """Where ``run``'s result JSON lives under a suite's output folder."""
    runs = (Path(out) / "runs").resolve()
    path = (runs / f"{run.name}.json").resolve()
    if path.parent != runs:  # names are plain (see AlgorithmSpec), so this is a second line of defence
        raise ValueError(f"run name {run.name!r} would write outside {runs}")
    return path


class RunFileError(ValueError):
    """A run file that is unreadable, malformed, out of range, or not the run its name says."""


def run_from_json(data: Any) -> RunSpec:
    """The :class:`RunSpec` recorded in a run file (``RunSpec.to_json``); ``ValueError`` if malformed."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("algorithm"), dict)
        or not isinstance(data.get("task"), dict)
    ):
        raise ValueError("its 'run' is not a run spec")
    try:
        fields = {**data, "algorithm": AlgorithmSpec(**data["algorithm"]), "task": TaskSpec(**data["task"])}
        fields["eval_budgets"] = tuple(fields["eval_budgets"])
        return RunSpec(**fields)
    except (TypeError, KeyError) as err:
        raise ValueError(f"its 'run' is not a run spec ({err})") from None


def check_result(data: Any, path: Path, run: RunSpec | None = None) -> dict[str, Any]:
    """``data`` if it is a valid result of the run its file is named after (and of ``run``, if
    given); else raises :class:`RunFileError` saying what is wrong."""

    def bad(reason: str) -> RunFileError:
        return RunFileError(f"{path}: {reason}")

    if not isinstance(data, dict):
        raise bad("not a run result (a JSON object)")
    missing = [k for k in ("run", "name", "curve", "finished", "train_seconds", "eval_id") if k not in data]
    if missing:
        raise bad(f"missing fields {missing}")
    try:
        spec = run_from_json(data["run"])
    except ValueError as err:
        raise bad(str(err)) from None
    if not (spec.name == data["name"] == path.stem):
        raise bad(f"its spec is run {spec.name!r} and its name {data['name']!r}, but the file is {path.name}")
    budgets_ok = spec.eval_budgets and spec.eval_budgets[0] == 0 and spec.eval_budgets[-1] == spec.budget
    if not budgets_ok or list(spec.eval_budgets) != sorted(set(spec.eval_budgets)):
        raise bad(f"its spec evaluates at {list(spec.eval_budgets)}, not from 0 up to its budget {spec.budget}")
    recorded = spec.to_json()
    if run is not None and recorded != run.to_json():
        changed = sorted(k for k, v in run.to_json().items() if recorded.get(k) != v)
        raise bad(f"it was made by another suite (different {changed})")
    if not isinstance(data["finished"], bool) or not _number(data["train_seconds"], 0.0):
        raise bad("'finished' must be true or false and 'train_seconds' a number >= 0")
    if "command" in data and not isinstance(data["command"], str):
        raise bad("'command' must be a string")
    failed = data.get("failed")
    if failed is not None and (data["finished"] or not isinstance(failed, dict)
                               or not isinstance(failed.get("error"), str)):  # fmt: skip
        raise bad("'failed' must be an object with its 'error', on an unfinished run")
    curve = data["curve"]
    if not isinstance(curve, list):
        raise bad("'curve' must be a list")
    budgets: list[int] = []
    for point in curve:
        problem = _point_problem(point, spec.eval_problems)
        if problem:
            raise bad(f"curve point {len(budgets)}: {problem}")
        budgets.append(point["budget"])
    if budgets != list(spec.eval_budgets[: len(budgets)]):
        raise bad(f"its curve is at budgets {budgets}, not a prefix of the run's {list(spec.eval_budgets)}")
    if data["finished"] and len(budgets) != len(spec.eval_budgets):
        raise bad(f"marked finished with {len(budgets)} of {len(spec.eval_budgets)} evaluations")
    return data


def _number(value: Any, low: float, high: float = math.inf) -> bool:
    real = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return real and low <= value <= high


def _point_problem(point: Any, eval_problems: int) -> str:
    """What is wrong with one curve point ("" if nothing)."""
    if not isinstance(point, dict):
        return "not an object"
    for key, low, high in (("budget", 0, math.inf), ("env_tokens", 0, math.inf), ("success_rate", 0, 1),
                           ("greedy_success_rate", 0, 1), ("mean_return", -math.inf, math.inf)):  # fmt: skip
        if not _number(point.get(key), low, high):
            return f"{key} = {point.get(key)!r} is not a number in [{low}, {high}]"
    if "rewarded_rate" in point and not _number(point["rewarded_rate"], 0, 1):
        return f"rewarded_rate = {point['rewarded_rate']!r} is not in [0, 1]"
    for key, rate in (("successes", "success_rate"), ("greedy_successes", "greedy_success_rate")):
        flags = point.get(key)
        if not isinstance(flags, list) or len(flags) != eval_problems or not all(isinstance(f, bool) for f in flags):
            return f"{key} must list {eval_problems} true/false values"
        if abs(sum(flags) / eval_problems - point[rate]) > 1e-9:
            return f"{rate} = {point[rate]} disagrees with its {key} ({sum(flags)} of {eval_problems})"
    return ""


def read_result(path: Path, run: RunSpec | None = None) -> dict[str, Any] | None:
    """A run's checked result, or ``None`` when there is no file; :class:`RunFileError` when
    the file is unreadable or invalid (see :func:`check_result`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise RunFileError(f"{path}: unreadable ({err})") from None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise RunFileError(f"{path}: not valid JSON, maybe truncated ({err})") from None
    return check_result(data, path, run)


def _existing_result(out: Path, run: RunSpec) -> dict[str, Any] | None:
    """``run``'s checked result under ``out``; an invalid file is set aside (``.json.bad``) and the run redone."""
    path = run_path(out, run)
    try:
        return read_result(path, run)
    except RunFileError as err:
        aside = path.with_suffix(".json.bad")
        number = 1
        while aside.exists():
            number += 1
            aside = path.with_suffix(f".json.bad{number}")
        path.replace(aside)
        logger.warning("%s; kept as %s, the run starts again", err, aside.name)
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(data, indent=1), encoding="utf-8")
    partial.replace(path)  # atomic: a reader never sees half a file


def _env_ids(run: RunSpec) -> tuple[str, str]:
    from cola_gym.registration import entry

    if run.algorithm.actions == "token":
        return _twin(entry(run.task.train).token_twin, run.task.train), _twin(
            entry(run.task.eval).token_twin, run.task.eval
        )
    return run.task.train, run.task.eval


def _twin(twin: str | None, env_id: str) -> str:
    if twin is None:
        raise ValueError(f"{env_id} has no token twin; token-action algorithms need one")
    return twin


def make_agent(run: RunSpec, env: Any, tensorboard_log: str | None) -> Any:
    """The run's algorithm on ``env``, starting from the prior (the CoLA policy or, for token
    twins, the decoder): the policy its entry in :data:`cola_agents.algorithms.ALGORITHMS` names."""
    kwargs = dict(run.algorithm.hyperparameters)
    try:
        return algorithms.make_algorithm(run.algorithm.algorithm, env, seed=run.seed,
                                         tensorboard_log=tensorboard_log, **kwargs)  # fmt: skip
    except (TypeError, AssertionError) as err:
        raise ValueError(
            f"run {run.name}: {run.algorithm.algorithm} refused its hyperparameters {kwargs}: {err}"
        ) from err


def algorithm_class(run: RunSpec) -> Any:
    """The class whose ``load`` restores ``run``'s checkpoints."""
    return algorithms.algorithm_class(run.algorithm.algorithm)


def run_one(
    run: RunSpec, out: str | os.PathLike[str], show_progress: bool = False, command: str | None = None
) -> dict[str, Any]:
    """Trains and evaluates ``run`` (resuming it); returns its result (also in ``runs/<name>.json``).

    Each evaluation plays every held-out problem twice: sampling from the agent's policy (the
    policy RL optimises: ``success_rate``, ``mean_return``, ...) and greedily
    (``greedy_success_rate``). ``command``: the command line that runs the suite, kept in the
    result (the leaderboard shows it).
    """
    import torch

    from cola_agents.evaluation import evaluate
    from cola_agents.sb3 import make_sb3_env

    out = Path(out)
    path = run_path(out, run)
    result = _existing_result(out, run)
    if result is not None and result["finished"]:  # checked: every evaluation is there
        return result
    train_id, eval_id = _env_ids(run)
    env_kwargs = {"observation": "hidden+prior", **run.env_kwargs}
    if run.algorithm.prior_kl_coef:
        env_kwargs["prior_kl_coef"] = run.algorithm.prior_kl_coef
    env = make_sb3_env(train_id, n_envs=run.n_envs, seed=run.seed, **env_kwargs)
    checkpoint = out / "checkpoints" / run.name / "agent.zip"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    tensorboard = str(out / "tensorboard" / run.name)
    if result is not None and result["curve"] and checkpoint.is_file():
        agent = algorithm_class(run).load(checkpoint, env=env, tensorboard_log=tensorboard)
        curve = result["curve"]
    else:
        agent = make_agent(run, env, tensorboard)
        curve = []
    seconds = float(result["train_seconds"]) if curve and result is not None else 0.0
    result = {"run": run.to_json(), "name": run.name, "train_id": train_id, "eval_id": eval_id,
              "curve": curve, "finished": False, "train_seconds": seconds}  # fmt: skip
    if command is not None:
        result["command"] = command
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


def record_failure(out: str | os.PathLike[str], run: RunSpec, error: BaseException) -> dict[str, Any]:
    """Marks ``run`` failed with ``error`` in its file (its evaluations so far are kept) and
    returns that result; the next run of the suite tries the run again."""
    path = run_path(out, run)
    try:
        result = read_result(path, run)
    except RunFileError:
        result = None
    if result is None:
        result = {"run": run.to_json(), "name": run.name, "train_id": run.task.train, "eval_id": run.task.eval,
                  "curve": [], "finished": False, "train_seconds": 0.0}  # fmt: skip
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    result.update(finished=False, failed={"error": f"{type(error).__name__}: {error}", "traceback": trace[-8000:]})
    _write_json(path, result)
    logger.error("run %s failed: %s: %s", run.name, type(error).__name__, error)
    return result


def exit_with_parent(parent: int, every_s: float = 2.0) -> None:
    """Ends this worker process when ``parent`` is gone (checked every ``every_s`` seconds).

    A worker whose runner was killed would otherwise go on with its run as an orphan, and a
    restarted runner would start a second copy of the same run writing the same files.
    """
    import threading

    def watch() -> None:
        while True:
            time.sleep(every_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_in_worker(
    run: RunSpec, out: str, threads: int, device: str | None = None, command: str | None = None
) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)  # runs side by side share the cores instead of fighting for them
    if device is not None:  # this worker's GPU: the models' "auto" device and SB3's "cuda"
        os.environ[DEVICE_VARIABLE] = device
        torch.cuda.set_device(device)
    return run_one(run, out, command=command)


def worker_devices(count: int) -> list[str | None]:
    """The device of each of ``count`` local runs: this machine's GPUs in turn (``None``: the
    process's own choice, as on a CPU machine or with ``$COLA_DEVICE`` set)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() and not os.environ.get(DEVICE_VARIABLE) else 0
    return [f"cuda:{index % gpus}" if gpus else None for index in range(count)]


def run_suite(
    suite: Suite,
    out: str | os.PathLike[str],
    launcher: Launcher = "local",
    workers: int = 1,
    ray_address: str | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    show_progress: bool = True,
    gpus_per_run: float | None = None,
    command: str | None = None,
) -> list[dict[str, Any]]:
    """Runs every run of ``suite`` not finished yet under ``out``; returns all their results
    (a run that raised is recorded as failed, see :func:`record_failure`, and the others go on).

    Args:
        suite: the suite.
        out: output folder (``suite.json``, ``runs/``, ``checkpoints/``, ``tensorboard/``).
        launcher: ``"local"`` (processes on this machine) or ``"ray"`` (tasks of a Ray cluster).
        workers: local: runs at once (1: in this process, one after another; more: one
            process each, on this machine's GPUs in turn when it has any); ray: ignored (the
            cluster schedules one CPU and ``gpus_per_run`` GPUs per run).
        ray_address: the cluster to join (``None``: ``RAY_ADDRESS``, else a local Ray).
        on_result: called with each result as it arrives.
        show_progress: a progress bar over the runs (and, in-process, over each run's steps).
        gpus_per_run: ray: GPUs a run asks for (a fraction shares a GPU between runs; ``None``:
            1 when the cluster has GPUs, else 0: a run without a GPU share sees no GPU).
        command: the command line that runs the suite, kept in every result.
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
        found = _existing_result(out, run)
        if found is not None and found["finished"]:
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
        _run_on_ray(pending, str(out), ray_address, arrived, gpus_per_run, command)
    elif workers == 1:
        for run in pending:
            try:
                result = run_one(run, out, show_progress=show_progress, command=command)
            except Exception as err:  # noqa: BLE001 - any crash of a run is recorded, the suite goes on
                result = record_failure(out, run, err)
            arrived(result)
    else:
        _run_in_processes(pending, str(out), workers, arrived, command)
    bar.close()
    return [results[run.name] for run in runs]


def _run_in_processes(
    runs: Sequence[RunSpec], out: str, workers: int, arrived: Callable[[dict[str, Any]], None], command: str | None
) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    devices = worker_devices(len(runs))
    context = multiprocessing.get_context("spawn")  # no forked torch threads or model copies
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=exit_with_parent,
                             initargs=(os.getpid(),)) as pool:  # fmt: skip
        futures = {
            pool.submit(_run_in_worker, run, out, threads, device, command): run
            for run, device in zip(runs, devices, strict=True)
        }
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as err:  # noqa: BLE001 - the run raised (or its process died)
                result = record_failure(out, futures[future], err)
            arrived(result)


def _run_on_ray(
    runs: Sequence[RunSpec],
    out: str,
    address: str | None,
    arrived: Callable[[dict[str, Any]], None],
    gpus_per_run: float | None = None,
    command: str | None = None,
) -> None:
    try:
        import ray
    except ImportError as err:
        raise ImportError("--launcher ray needs Ray: pip install 'cola-gym[ray]'") from err
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    if gpus_per_run is None:
        gpus_per_run = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    remote = ray.remote(num_cpus=1, num_gpus=gpus_per_run)(_run_in_worker)
    tasks = {remote.remote(run, out, 1, None, command): run for run in runs}
    pending = list(tasks)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            result = ray.get(ready[0])
        except Exception as err:  # noqa: BLE001 - the run raised (Ray wraps its error)
            result = record_failure(out, tasks[ready[0]], err)
        arrived(result)
