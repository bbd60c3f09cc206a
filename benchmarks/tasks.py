"""Base success of a model on every task level: where does RL start?

For each evaluation id of the difficulty ladders (``level = ...`` in ``cola_gym/tasks/*/spec.toml``) and
each seed: the CoLA policy prior plays 64 test problems (the seed picks them) greedily and
sampled (top-k 40, T = 1, the release setting), all in one batch. Reported per (id, seed,
mode): success rate, mean return, mean episode tokens, and the time spent in the task's
grading as a share of the episode time (target < 5 %). Results are written after every
run and a rerun skips what is done, so a stopped benchmark resumes where it stopped.

    python benchmarks/tasks.py                      # every ladder id, 2 seeds, default model
    python benchmarks/tasks.py --ids CoLA-LCM-Easy-v0 CoLA-Countdown-Easy-v0 --seeds 0
    python benchmarks/tasks.py --table              # print the Markdown table of the JSON
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _report import pyplot, save_figure, write_report

import cola_gym
from cola_gym.registration import registry, task_for

MODES = {"greedy": True, "sampled": False}


class GradingClock:
    """Adds up the wall time spent in a task class's ``end_turn`` (grading) while installed."""

    def __init__(self, task_class: type) -> None:
        self.task_class, self.seconds = task_class, 0.0
        self.original: Callable[..., Any] = task_class.end_turn

    def __enter__(self) -> GradingClock:
        original = self.original

        def timed(task: Any, state: Any, text: str) -> Any:
            started = time.perf_counter()
            try:
                return original(task, state, text)
            finally:
                self.seconds += time.perf_counter() - started

        self.task_class.end_turn = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self.task_class.end_turn = self.original  # type: ignore[method-assign]


def measure(env_id: str, seed: int, deterministic: bool, args: argparse.Namespace) -> dict[str, float]:
    """One (id, seed, mode) run of the prior on ``args.problems`` test problems."""

    from cola_agents import PriorAgent
    from cola_agents.evaluation import evaluate

    task = task_for(env_id)
    count = task.num_tasks or args.problems
    indices = np.random.default_rng(seed).choice(count, size=min(args.problems, count), replace=False)
    kwargs: dict[str, Any] = {"track_policy": True}
    if args.model:
        kwargs["model"] = args.model
    with GradingClock(type(task)) as clock:
        run = evaluate(PriorAgent(seed=seed), env_id, indices.tolist(), n_envs=args.batch,
                       deterministic=deterministic, show_progress=True, **kwargs)  # fmt: skip
    return {
        "success_rate": run.success_rate,
        "mean_return": float(np.mean(run.rewards)),
        "mean_tokens": float(np.mean(run.tokens)),
        "problems": float(len(indices)),
        "seconds": run.seconds,
        "grading_share": clock.seconds / run.seconds,
    }


def summarize(runs: dict[str, dict[str, float]], ladder: dict[str, str]) -> list[dict[str, Any]]:
    """One row per id: mean over seeds of each mode's success, tokens and grading share."""
    rows = []
    for env_id, level in ladder.items():
        row: dict[str, Any] = {"id": env_id, "level": level}
        for mode in MODES:
            done = [v for k, v in runs.items() if k.startswith(f"{env_id}|{mode}|")]
            if done:
                row[f"{mode}_success"] = float(np.mean([d["success_rate"] for d in done]))
                row[f"{mode}_seeds"] = [d["success_rate"] for d in done]
                row[f"{mode}_tokens"] = float(np.mean([d["mean_tokens"] for d in done]))
                row[f"{mode}_grading_share"] = float(np.mean([d["grading_share"] for d in done]))
        if len(row) > 2:
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| id | level | greedy success (per seed) | sampled success (per seed) | mean tokens (greedy / sampled) "
        "| grading share |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = []
        for mode in MODES:
            if f"{mode}_success" in row:
                seeds = ", ".join(f"{s:.0%}" for s in row[f"{mode}_seeds"])
                cells.append(f"**{row[f'{mode}_success']:.0%}** ({seeds})")
            else:
                cells.append("-")
        tokens = " / ".join(f"{row[f'{m}_tokens']:.0f}" if f"{m}_tokens" in row else "-" for m in MODES)
        shares = [row[f"{m}_grading_share"] for m in MODES if f"{m}_grading_share" in row]
        lines.append(f"| {row['id']} | {row['level']} | {cells[0]} | {cells[1]} | {tokens} | {max(shares):.2%} |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(rows)), 4.5))
    x = np.arange(len(rows))
    for offset, mode in ((-0.2, "greedy"), (0.2, "sampled")):
        ax.bar(x + offset, [100 * r.get(f"{mode}_success", 0) for r in rows], width=0.4, label=f"{mode} prior")
    ax.axhspan(10, 70, color="green", alpha=0.08, label="10-70 %: room to learn")
    ax.set_xticks(x, [r["id"].removeprefix("CoLA-").removesuffix("-v0") for r in rows], rotation=60, ha="right")
    ax.set_ylabel("base success (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Base success of {report['model']} per task level")
    ax.legend()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="CoLA checkpoint (default: each id's default model)")
    parser.add_argument("--ids", nargs="*", default=None, help="ids to measure (default: every ladder id)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--modes", nargs="*", choices=list(MODES), default=list(MODES))
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64, help="episodes decoded together")
    parser.add_argument("--out", default="benchmarks/results/tasks.json")
    parser.add_argument("--table", action="store_true", help="only print the Markdown table of --out")
    args = parser.parse_args()
    out = Path(args.out)
    ladder = registry().ladder
    previous = json.loads(out.read_text()) if out.is_file() else {}
    if args.table:
        print(markdown(previous.get("rows", [])))
        return
    unknown = sorted(set(args.ids or ()) - set(ladder))
    if unknown:
        parser.error(f"not ladder ids: {unknown}; choose from {sorted(ladder)}")
    ids = args.ids or list(ladder)
    same_model = previous.get("model") == (args.model or "default")
    runs: dict[str, dict[str, float]] = previous.get("runs", {}) if same_model else {}
    report: dict[str, Any] = {"model": args.model or "default", "cola_gym": cola_gym.__version__, "runs": runs}
    for env_id in ids:
        for seed in args.seeds:
            for mode in args.modes:
                deterministic = MODES[mode]
                key = f"{env_id}|{mode}|{seed}"
                if key in runs:
                    continue
                runs[key] = measure(env_id, seed, deterministic, args)
                print(key, json.dumps(runs[key]), flush=True)
                report["rows"] = summarize(runs, ladder)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(report, indent=2))  # resumable after every run
    report["rows"] = summarize(runs, ladder)
    write_report(report, out, plot)
    print(markdown(report["rows"]))


if __name__ == "__main__":
    main()
