"""Aggregates a suite's runs the way RL results are reported today (rliable, Agarwal et al. 2021).

Scores are held-out success rates. For each algorithm: the interquartile mean (IQM) and the
mean over every (task, seed) run, with 95 % stratified bootstrap confidence intervals, at the
start and at the end of the budget, and of the improvement (end minus start, per run); the
probability that one algorithm's final score beats another's; learning curves (IQM with its
CI band at every budget point). Written as ``report.json``, ``report.md`` and
``learning_curves.png`` (and ``performance_profile.png``). Runs that crashed are listed with
their errors, never silently left out.

The leaderboard (:func:`leaderboard_markdown`) ranks the algorithms by the IQM of their final
scores over every (task, seed) run, with per-task IQMs, env tokens, training time and the
commands that produced the runs.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np

from cola_agents.benchmark.runner import RunFileError, read_result


def load_results(folder: str | os.PathLike[str], skip_bad: bool = False) -> list[dict[str, Any]]:
    """Every run result under ``folder/runs`` that has at least one evaluation (finished or
    not) or that failed.

    Every file is checked (schema, ranges, and that its spec is the run it is named after);
    a bad file raises :class:`RunFileError` naming each bad file, or with ``skip_bad`` is
    left out with a warning.
    """
    runs = Path(folder) / "runs"
    if not runs.is_dir():
        raise FileNotFoundError(f"no runs in {folder} (expected {runs}/*.json from cola-gym benchmark run)")
    results, bad = [], []
    for path in sorted(runs.glob("*.json")):
        try:
            result = read_result(path)
        except RunFileError as err:
            bad.append(str(err))
            continue
        if result is not None and (result["curve"] or result.get("failed")):
            results.append(result)
    if bad and not skip_bad:
        raise RunFileError(f"{len(bad)} bad run file(s); fix or delete them, or report without them "
                           "(--skip-bad):\n  " + "\n  ".join(bad))  # fmt: skip
    for problem in bad:
        warnings.warn(f"left out of the report: {problem}", stacklevel=2)
    return results


def score_matrices(results: Sequence[dict[str, Any]], point: int) -> dict[str, np.ndarray]:
    """``{algorithm: float[runs (seeds), tasks]}`` success at curve point ``point`` (-1: last).

    Only seeds present for every task of an algorithm are kept, so rows are comparable.
    """
    table: dict[str, dict[str, dict[int, float]]] = {}
    for result in results:
        spec = result["run"]
        curve = result["curve"]
        if point >= len(curve) or (point == -1 and not result.get("finished")):
            continue
        algorithm, task = spec["algorithm"]["name"], result["eval_id"]
        table.setdefault(algorithm, {}).setdefault(task, {})[spec["seed"]] = float(curve[point]["success_rate"])
    matrices = {}
    for algorithm, tasks in table.items():
        seeds = sorted(set.intersection(*(set(by_seed) for by_seed in tasks.values())))
        if seeds:
            names = sorted(tasks)
            matrices[algorithm] = np.array([[tasks[t][s] for t in names] for s in seeds])
    return matrices


def _interval_estimates(scores: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, dict[str, Any]]:
    from rliable import library as rly
    from rliable import metrics

    def aggregate(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    if not scores:
        return {}
    points, intervals = rly.get_interval_estimates(scores, aggregate, reps=reps,
                                                   random_state=np.random.RandomState(seed))  # fmt: skip
    return {
        name: {
            "iqm": float(points[name][0]),
            "iqm_ci": [float(intervals[name][0, 0]), float(intervals[name][1, 0])],
            "mean": float(points[name][1]),
            "mean_ci": [float(intervals[name][0, 1]), float(intervals[name][1, 1])],
            "runs": int(scores[name].size),
            "seeds": int(scores[name].shape[0]),
            "tasks": int(scores[name].shape[1]),
        }
        for name in scores
    }


def build_report(results: Sequence[dict[str, Any]], reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The aggregate numbers of ``results`` (see the module docstring) as JSON-able data."""
    from rliable import library as rly
    from rliable import metrics

    if not results:
        raise ValueError("no run results to report (has any run reached its first evaluation?)")
    failed = [{"name": r["name"], "error": r["failed"]["error"]} for r in results if r.get("failed")]
    results = [r for r in results if r["curve"]]
    start, final = score_matrices(results, 0), score_matrices(results, -1)
    improvement = {a: final[a] - start[a] for a in final if a in start and start[a].shape == final[a].shape}
    report: dict[str, Any] = {
        "start": _interval_estimates(start, reps, seed),
        "final": _interval_estimates(final, reps, seed),
        "improvement": _interval_estimates(improvement, reps, seed),
        "probability_of_improvement": {},
        "curves": {},
        "failed": failed,
    }
    for x, y in permutations(sorted(final), 2):
        if final[x].shape[1] == final[y].shape[1]:
            pair = {f"{x},{y}": (final[x], final[y])}
            points, intervals = rly.get_interval_estimates(pair, metrics.probability_of_improvement, reps=reps,
                                                           random_state=np.random.RandomState(seed))  # fmt: skip
            name = f"{x},{y}"
            report["probability_of_improvement"][f"P({x} > {y})"] = {
                "estimate": float(np.ravel(points[name])[0]),
                "ci": [float(np.ravel(intervals[name])[0]), float(np.ravel(intervals[name])[1])],
            }
    longest = max((len(r["curve"]) for r in results), default=0)
    for index in range(longest):
        scores = score_matrices(results, index)
        budgets = {r["run"]["algorithm"]["name"]: r["curve"][index]["budget"] for r in results
                   if index < len(r["curve"])}  # fmt: skip
        for name, estimate in _interval_estimates(scores, reps, seed).items():
            report["curves"].setdefault(name, []).append({"budget": budgets[name], **estimate})
    return report


def markdown_table(report: dict[str, Any]) -> str:
    """The report as Markdown: one row per algorithm, IQM and mean with their 95 % CIs."""

    def cell(entry: dict[str, Any] | None, key: str) -> str:
        if entry is None:
            return "-"
        low, high = entry[f"{key}_ci"]
        return f"{100 * entry[key]:.1f} [{100 * low:.1f}, {100 * high:.1f}]"

    lines = [
        "| algorithm | runs | start IQM | final IQM | final mean | improvement mean |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in sorted(report["final"]):
        final = report["final"][name]
        lines.append(f"| {name} | {final['runs']} ({final['tasks']} tasks x {final['seeds']} seeds) | "
                     f"{cell(report['start'].get(name), 'iqm')} | {cell(final, 'iqm')} | {cell(final, 'mean')} | "
                     f"{cell(report['improvement'].get(name), 'mean')} |")  # fmt: skip
    lines.append("")
    lines.append("Held-out success in %, 95 % stratified bootstrap CIs in brackets (rliable).")
    if report["probability_of_improvement"]:
        lines += ["", "| comparison | probability of improvement |", "| --- | --- |"]
        for name, entry in report["probability_of_improvement"].items():
            low, high = entry["ci"]
            lines.append(f"| {name} | {entry['estimate']:.2f} [{low:.2f}, {high:.2f}] |")
    lines += _failed_lines(report)
    return "\n".join(lines) + "\n"


def _failed_lines(report: dict[str, Any]) -> list[str]:
    failed = report.get("failed", [])
    if not failed:
        return []
    lines = ["", f"**{len(failed)} run(s) failed** (their evaluations so far are kept; running the suite "
             "again retries them):", ""]  # fmt: skip
    lines += [f"- `{entry['name']}`: {entry['error'].splitlines()[0] if entry['error'] else '?'}" for entry in failed]
    return lines


def leaderboard_markdown(results: Sequence[dict[str, Any]], report: dict[str, Any], title: str = "") -> str:
    """The leaderboard: one row per algorithm, best aggregate IQM of final held-out success first.

    Columns: the IQM over every (task, seed) run with its 95 % CI, the IQM of each task, the
    runs (tasks x seeds), env tokens and training time per run; below, the command lines that
    produced the runs (recorded in each run's file).
    """
    from rliable import metrics

    finished = [r for r in results if r.get("finished")]
    tasks = sorted({r["run"]["task"]["eval"] for r in finished})
    final = score_matrices(finished, -1)
    commands: dict[str, list[str]] = {}
    rows: list[str] = []
    for name in sorted(final, key=lambda n: -report["final"][n]["iqm"]):
        runs = [r for r in finished if r["run"]["algorithm"]["name"] == name]
        entry, spec = report["final"][name], runs[0]["run"]["algorithm"]
        per_task = []
        for task in tasks:
            scores = [r["curve"][-1]["success_rate"] for r in runs if r["run"]["task"]["eval"] == task]
            per_task.append(f"{100 * metrics.aggregate_iqm(np.array(scores)):.1f}" if scores else "-")
        for command in sorted({r.get("command", "") for r in runs}):
            commands.setdefault(command, []).append(name)
        tokens = np.mean([r["curve"][-1]["env_tokens"] for r in runs])
        minutes = np.mean([r["train_seconds"] for r in runs]) / 60
        low, high = entry["iqm_ci"]
        rows.append(f"| {len(rows) + 1} | {name} | `{spec['algorithm']}` | {spec['actions']} | "
                    f"**{100 * entry['iqm']:.1f}** [{100 * low:.1f}, {100 * high:.1f}] | " + " | ".join(per_task)
                    + f" | {entry['tasks']} x {entry['seeds']} | {tokens:,.0f} | {minutes:.1f} min |")  # fmt: skip
    short = [task.removeprefix("CoLA-").removesuffix("-v0") for task in tasks]
    lines = [f"# {title or 'Leaderboard'}", "",
             "Held-out success (%) at the end of the budget: the interquartile mean over every (task, seed) run "
             "with its 95 % stratified bootstrap CI (rliable), then each task's IQM over seeds. Runs: tasks x seeds "
             "with every task finished; env tokens and training time (evaluations excluded) are per run.", "",
             "| rank | algorithm | class | actions | IQM [95 % CI] | " + " | ".join(short)
             + " | runs | env tokens | train time |",
             "| --- " * (8 + len(tasks)) + "|", *rows, ""]  # fmt: skip
    if commands:
        lines += ["Produced by:", ""]
        for command, names in commands.items():
            lines.append(f"- {', '.join(names)}: `{command}`" if command else f"- {', '.join(names)}: (not recorded)")
    lines += _failed_lines(report)
    return "\n".join(lines) + "\n"


def plot_curves(report: dict[str, Any], path: str | os.PathLike[str], title: str = "") -> Path:
    """Learning curves: IQM held-out success against env tokens, with 95 % CI bands."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for name, curve in sorted(report["curves"].items()):
        budgets = [p["budget"] for p in curve]
        iqm = np.array([p["iqm"] for p in curve]) * 100
        low = np.array([p["iqm_ci"][0] for p in curve]) * 100
        high = np.array([p["iqm_ci"][1] for p in curve]) * 100
        (line,) = axes.plot(budgets, iqm, marker="o", label=name)
        axes.fill_between(budgets, low, high, color=line.get_color(), alpha=0.2)
    title = title or "learning curves (95 % bootstrap CIs)"
    labels = ("env tokens (training budget)", "held-out success, IQM (%)", title)
    return _finish(figure, axes, labels, path)


def plot_profile(results: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Performance profile of the final scores: the share of runs above each success level."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from rliable import library as rly

    final = score_matrices(results, -1)
    taus = np.linspace(0.0, 1.0, 41)
    profiles, cis = rly.create_performance_profile(final, taus, reps=500)
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for name in sorted(final):
        (line,) = axes.plot(taus * 100, profiles[name], label=name)
        axes.fill_between(taus * 100, cis[name][0], cis[name][1], color=line.get_color(), alpha=0.2)
    title = "performance profile (final budget)"
    labels = ("held-out success level tau (%)", "fraction of runs with success > tau", title)
    return _finish(figure, axes, labels, path)


def _finish(figure: Any, axes: Any, labels: tuple[str, str, str], path: str | os.PathLike[str]) -> Path:
    """Labels (x, y, title), grid and legend; saves the figure to ``path`` and closes it."""
    from matplotlib import pyplot as plt

    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    axes.set_title(labels[2])
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    out = Path(path)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out


def write_report(folder: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                 reps: int = 2000, title: str = "", skip_bad: bool = False,
                 leaderboard: str | os.PathLike[str] | None = None) -> dict[str, Path]:  # fmt: skip
    """Writes ``report.json``, ``report.md``, ``learning_curves.png`` and ``performance_profile.png``
    (``skip_bad``: leave out bad run files instead of refusing, see :func:`load_results`), and
    the leaderboard to ``leaderboard`` when given (see :func:`leaderboard_markdown`)."""
    results = load_results(folder, skip_bad=skip_bad)
    report = build_report(results, reps=reps)
    if leaderboard is not None:
        board = Path(leaderboard)
        board.parent.mkdir(parents=True, exist_ok=True)
        board.write_text(leaderboard_markdown(results, report, title), encoding="utf-8")
    target = Path(out or folder)
    target.mkdir(parents=True, exist_ok=True)
    paths = {"json": target / "report.json", "markdown": target / "report.md"}
    paths["json"].write_text(json.dumps(report, indent=1), encoding="utf-8")
    paths["markdown"].write_text(markdown_table(report), encoding="utf-8")
    paths["curves"] = plot_curves(report, target / "learning_curves.png", title)
    if score_matrices(results, -1):
        paths["profile"] = plot_profile(results, target / "performance_profile.png")
    if leaderboard is not None:
        paths["leaderboard"] = Path(leaderboard)
    return paths
