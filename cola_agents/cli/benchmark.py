"""``cola-gym benchmark run`` / ``report``: the RL benchmark protocol and its rliable report."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from cola_agents.algorithms import algorithm_names
from cola_agents.cli.options import add_decoder_options
from cola_agents.config_args import add_config_arguments, config_values

_SUITE_FIELDS = ("seeds", "budget", "eval_points", "eval_problems", "n_envs")
"""The :class:`~cola_agents.benchmark.suite.Suite` fields given as options (tasks and
algorithms have options of their own, ``--env`` and ``--algo``)."""


def add_parser(commands: Any) -> None:
    """Adds ``benchmark run`` and ``benchmark report`` to the subcommands."""
    benchmark = commands.add_parser("benchmark", help="the RL benchmark protocol: run a suite, report it")
    benchmark_commands = benchmark.add_subparsers(dest="benchmark_command", required=True)
    _add_run(benchmark_commands)
    _add_report(benchmark_commands)


def _add_run(commands: Any) -> None:
    from cola_agents.benchmark.suite import Suite

    bench_run = commands.add_parser(
        "run",
        help="train and evaluate every (algorithm, task, seed) of a suite; re-running resumes",
        description="Train and evaluate every (algorithm, task, seed) run of a suite at equal env-token "
        "budgets on fixed held-out problems; re-running the command resumes it. Ends with the report.",
    )
    bench_run.add_argument("--suite", help="suite TOML file (benchmarks/suites/*.toml); or give --env and --algo")
    bench_run.add_argument("--env", action="append", default=[],
                           help="evaluation id, repeatable (trains on its training id when it has one)")  # fmt: skip
    bench_run.add_argument("--algo", action="append", default=[],
                           help=f"algorithm, repeatable: {', '.join(algorithm_names())}, or your own class as "
                           "module:Class; a -token suffix runs it on the token twins. With --suite: these "
                           "algorithms on the suite's tasks, budget and seeds (to add them to its results)",
                           )  # fmt: skip
    bench_run.add_argument("--model", help="model for every env (default: each id's own)")
    bench_run.add_argument("--max-steps", type=int, help="token limit of every episode (default: each id's)")
    bench_run.add_argument("--data-dir", help="folder with the math data sets (default: $COLA_DATA_DIR)")
    bench_run.add_argument("--launcher", choices=("local", "ray"), default="local",
                           help="local processes, or tasks on a Ray cluster (RAY_ADDRESS / --ray-address)")  # fmt: skip
    bench_run.add_argument("--workers", type=int, default=1, help="local: runs at once")
    bench_run.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    bench_run.add_argument("--gpus-per-run", type=float,
                           help="ray: GPUs each run asks for (a fraction shares a GPU; default: 1 on a cluster "
                           "with GPUs, else 0)")  # fmt: skip
    add_decoder_options(bench_run)
    bench_run.add_argument("--out", required=True, help="output folder (runs/, checkpoints/, tensorboard/, report)")
    bench_run.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the report")
    bench_run.add_argument("--leaderboard", help="also write the leaderboard of every run in --out to this file")
    suite = bench_run.add_argument_group("the suite (Suite; with --suite, these replace the file's)")
    add_config_arguments(suite, Suite, fields=_SUITE_FIELDS)
    bench_run.set_defaults(run=run)


def _add_report(commands: Any) -> None:
    bench_report = commands.add_parser("report", help="aggregate a suite's runs with rliable")
    bench_report.add_argument("--runs", required=True, help="the folder of cola-gym benchmark run --out")
    bench_report.add_argument("--out", help="where to write the report (default: --runs)")
    bench_report.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    bench_report.add_argument("--title", default="", help="title of the learning-curve plot")
    bench_report.add_argument(
        "--skip-bad", action="store_true", help="leave out bad run files (with a warning) instead of refusing"
    )
    bench_report.add_argument("--leaderboard", help="also write the leaderboard (Markdown) to this file")
    bench_report.set_defaults(run=report)


def run(args: argparse.Namespace) -> int:
    """Runs the suite (resuming it), then prints its report."""
    from cola_agents.benchmark import run_suite, write_report
    from cola_gym.model.decoders import DEVICE_VARIABLE

    suite = _suite(args)
    runs = suite.runs()
    print(f"{len(runs)} runs ({len(suite.algorithms)} algorithms x {len(suite.tasks)} tasks x {len(suite.seeds)} "
          f"seeds), {suite.budget:,} env tokens each, evaluated at {list(suite.eval_budgets)} on "
          f"{suite.eval_problems} held-out problems; results in {args.out}")  # fmt: skip
    device = getattr(args, "device", "auto")
    if device != "auto":  # where the runs decode: not part of what a run is
        os.environ[DEVICE_VARIABLE] = device
    command = shlex.join(["cola-gym", *sys.argv[1:]])
    results = run_suite(suite, args.out, launcher=args.launcher, workers=args.workers, ray_address=args.ray_address,
                        gpus_per_run=args.gpus_per_run, command=command)  # fmt: skip
    _print_report(write_report(args.out, reps=args.reps, leaderboard=args.leaderboard))
    failed = [result["name"] for result in results if result.get("failed")]
    if failed:
        print(f"{len(failed)} run(s) failed ({', '.join(failed)}): see above; running the command again retries them")
        return 1
    return 0


def report(args: argparse.Namespace) -> int:
    """Writes and prints the report of a suite's runs."""
    from cola_agents.benchmark import write_report

    paths = write_report(args.runs, args.out, reps=args.reps, title=args.title, skip_bad=args.skip_bad,
                         leaderboard=args.leaderboard)  # fmt: skip
    _print_report(paths)
    return 0


def _suite(args: argparse.Namespace) -> Any:
    """The suite of ``--suite`` (its fields replaced by the options given; its algorithms by
    ``--algo`` when given), or of ``--env`` and ``--algo``."""
    from cola_agents.benchmark import load_suite
    from cola_agents.benchmark.suite import Suite, TaskSpec, parse_algorithms, training_id
    from cola_gym.model import DecoderSettings

    overrides = config_values(args, Suite)
    decoder = config_values(args, DecoderSettings)  # quantization and dtype are part of the experiment
    quantization = None if decoder.get("quantization") == "auto" else decoder.get("quantization")
    given = (("model", args.model), ("data_dir", args.data_dir), ("max_episode_steps", args.max_steps),
             ("quantization", quantization), ("dtype", decoder.get("dtype")))  # fmt: skip
    env_kwargs = {key: value for key, value in given if value is not None}
    if args.suite:
        if args.env:
            raise ValueError("give either --suite or --env, not both (the suite names its tasks)")
        suite = load_suite(args.suite, **overrides)
        if args.algo:
            suite = dataclasses.replace(suite, algorithms=parse_algorithms(args.algo))
        return dataclasses.replace(suite, env_kwargs={**suite.env_kwargs, **env_kwargs}) if env_kwargs else suite
    if not args.env or not args.algo:
        raise ValueError("give --suite FILE, or at least one --env and one --algo")
    tasks = tuple(TaskSpec(train=training_id(env_id), eval=env_id) for env_id in args.env)
    return Suite(tasks, parse_algorithms(args.algo), env_kwargs=env_kwargs, **overrides)


def _print_report(paths: dict[str, Path]) -> None:
    print(Path(paths["markdown"]).read_text(encoding="utf-8"))
    print("report: " + ", ".join(str(path) for path in paths.values()))
