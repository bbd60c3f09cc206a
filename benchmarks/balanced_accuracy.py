"""Balanced accuracy of a suite's runs: success averaged over answer classes (a constant answer scores chance).

On a task with few possible answers (yes/no syllogisms), plain accuracy pays an agent that
always gives the majority answer: 25 of Syllogism-Easy's first 32 held-out problems answer
"Yes", so "Yes" everywhere is worth 78 %. Balanced accuracy is the mean over the reference
answers' classes of the success rate within each class (a constant answer: 1 / classes), read
from the per-problem successes every run file keeps, at every evaluation point, sampled and
greedy. Tasks whose references take more than ``--max-classes`` values are left out.

    python benchmarks/balanced_accuracy.py --runs benchmarks/results/claims-default-60k
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.registration import task_for


def references(env_id: str, count: int) -> list[str] | None:
    """The reference answers of problems ``0..count-1`` (``None`` when the task's info has none)."""
    task, rng = task_for(env_id), np.random.default_rng(0)
    found = []
    for index in range(count):
        info = task.info(task.begin(task.check_options({"task_index": index}), rng).state)
        if "reference" not in info:
            return None
        found.append(str(info["reference"]).strip().lower())
    return found


def balanced(successes: list[bool], classes: list[str]) -> float:
    by_class: dict[str, list[bool]] = defaultdict(list)
    for success, label in zip(successes, classes, strict=True):
        by_class[label].append(success)
    return statistics.mean(statistics.mean(v) for v in by_class.values())


def analyse(runs: Path, max_classes: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    cache: dict[str, list[str] | None] = {}
    for path in sorted((runs / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        if not run.get("finished"):
            continue
        env_id = run["eval_id"]
        count = len(run["curve"][0]["successes"])
        if env_id not in cache:
            cache[env_id] = references(env_id, count)
        labels = cache[env_id]
        if labels is None or len(set(labels)) > max_classes:
            continue
        algorithm, task, seed = path.stem.split("__")
        points = []
        for point in run["curve"]:
            row = {"env_tokens": point["env_tokens"], "accuracy": point["success_rate"],
                   "balanced": balanced(point["successes"], labels)}  # fmt: skip
            if "greedy_successes" in point:
                row["greedy_accuracy"] = point["greedy_success_rate"]
                row["greedy_balanced"] = balanced(point["greedy_successes"], labels)
            points.append(row)
        classes = {label: labels.count(label) for label in sorted(set(labels))}
        report.setdefault(task, {"classes": classes, "runs": {}})["runs"][f"{algorithm}|{seed}"] = points
    return report


def table(report: dict[str, Any]) -> str:
    lines = []
    for task, found in report.items():
        chance = 1 / len(found["classes"])
        lines += [f"{task}: classes {found['classes']} (a constant answer: balanced {chance:.0%})", "",
                  "| run | accuracy start -> end (sampled / greedy) | balanced start -> end (sampled / greedy) |",
                  "| --- | --- | --- |"]  # fmt: skip
        for name, points in sorted(found["runs"].items()):
            first, last = points[0], points[-1]

            def pair(point: dict[str, Any], key: str) -> str:
                greedy = point.get(f"greedy_{key}")
                return f"{point[key]:.0%} / {'-' if greedy is None else f'{greedy:.0%}'}"

            lines.append(f"| {name.replace('|', ', ')} | {pair(first, 'accuracy')} -> {pair(last, 'accuracy')} "
                         f"| {pair(first, 'balanced')} -> {pair(last, 'balanced')} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="a suite's results folder (with runs/)")
    parser.add_argument("--max-classes", type=int, default=8, help="tasks with more reference answers are left out")
    parser.add_argument("--out", default=None, help="JSON to write (default: <runs>/balanced_accuracy.json)")
    args = parser.parse_args()
    runs = Path(args.runs)
    if not (runs / "runs").is_dir():
        parser.error(f"{runs} has no runs/ folder")
    report = analyse(runs, args.max_classes)
    out = Path(args.out) if args.out else runs / "balanced_accuracy.json"
    out.write_text(json.dumps(report, indent=2))
    print(table(report))


if __name__ == "__main__":
    main()
