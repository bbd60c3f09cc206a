"""The household results in the published form: success by task type, seen and unseen rooms.

Rows: the CoLA prior (greedy and sampled: the prompting floor) from ``household.py``'s success
part, then every algorithm of a household benchmark suite (``cola-gym benchmark run``) at its
first and last evaluation (valid-unseen games, sampled from the trained policy, the mean over
seeds), then the published ALFWorld numbers for Qwen2.5-1.5B-Instruct (GiGPO paper, 3 seeds) as
a reference: a different model (1.5B parameters against our micro tier's 3.6M), prompt,
harness (50 steps, groups of 8 envs sharing a start) and games (ALFWorld's own), so no row of
ours is comparable to them beyond the shape of the table.

    python benchmarks/household_table.py --prior benchmarks/results/household-micro.json \\
        --runs benchmarks/results/micro-household --out benchmarks/results/household-table.md
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path
from typing import Any

from cola_gym.tasks.household import TASK_TYPES, generate_game
from cola_gym.tasks.household.vocabulary import SHORT_NAMES

PUBLISHED = {
    "prompting": 4.1,
    "ReAct": 12.8,
    "PPO": 54.4,
    "GRPO": 72.8,
    "GiGPO": 86.7,
}
"""ALFWorld success (%), Qwen2.5-1.5B-Instruct, all task types (GiGPO paper, 3 seeds)."""

COLUMNS = ("all", *TASK_TYPES)


def _cells(values: dict[str, float | None]) -> str:
    return " | ".join("-" if values.get(c) is None else f"{100 * values[c]:.0f}" for c in COLUMNS)  # type: ignore[operator]


def prior_rows(path: Path) -> list[tuple[str, str, dict[str, float | None]]]:
    """``(label, split, per-column success)`` of the prior, from ``household.py``'s JSON."""
    report = json.loads(path.read_text())
    rows = []
    for key, run in sorted(report.get("success", {}).items()):
        split, mode = key.split("|")
        values: dict[str, float | None] = {"all": run["success_rate"], **run["per_type"]}
        rows.append((f"CoLA prior, {mode} ({report.get('model', '')})", split, values))
    return rows


def suite_rows(runs: Path, split: str = "valid_unseen") -> list[tuple[str, str, dict[str, float | None]]]:
    """Per algorithm of a suite's finished runs, sampled and greedy: success by task type at the
    first and the last evaluation (games ``0..n-1`` of ``split``; each game's type is its own)."""
    by_algorithm: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((runs / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        if run.get("finished"):
            by_algorithm.setdefault(path.name.split("__")[0], []).append(run)
    rows = []
    types: dict[int, str] = {}
    for (algorithm, found), (mode, key) in itertools.product(
        sorted(by_algorithm.items()), (("sampled", "successes"), ("greedy", "greedy_successes"))
    ):
        for label, point in (("start", 0), (f"after {found[0]['curve'][-1]['env_tokens']:,} env tokens", -1)):
            per_seed = []
            for run in found:
                successes = run["curve"][point][key]
                for index in range(len(successes)):
                    types.setdefault(index, generate_game(split, index).goal.task_type)
                values: dict[str, float | None] = {"all": statistics.mean(successes)}
                for task_type in TASK_TYPES:
                    mine = [s for i, s in enumerate(successes) if types[i] == task_type]
                    values[task_type] = statistics.mean(mine) if mine else None
                per_seed.append(values)
            mean = {c: statistics.mean(v[c] for v in per_seed if v[c] is not None) for c in COLUMNS}
            rows.append((f"{algorithm}, {mode}, {label} ({len(found)} seeds)", "unseen", dict(mean)))
    return rows


def table(rows: list[tuple[str, str, dict[str, float | None]]]) -> str:
    header = "| agent | rooms | " + " | ".join("All" if c == "all" else SHORT_NAMES[c] for c in COLUMNS) + " |"
    lines = [header, "| --- " * (2 + len(COLUMNS)) + "|"]
    lines += [f"| {label} | {split} | {_cells(values)} |" for label, split, values in rows]
    for name, value in PUBLISHED.items():
        cells = " | ".join([f"{value:.1f}"] + ["-"] * len(TASK_TYPES))
        lines.append(
            f"| *Qwen2.5-1.5B-Instruct, {name} (published; a different model and harness)* | ALFWorld | {cells} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", default="benchmarks/results/household-micro.json", help="household.py's JSON")
    parser.add_argument("--runs", default=None, help="a household benchmark suite's results folder")
    parser.add_argument("--out", default=None, help="Markdown file to write (default: print only)")
    args = parser.parse_args(argv)
    rows = prior_rows(Path(args.prior))
    if args.runs:
        if not (Path(args.runs) / "runs").is_dir():
            parser.error(f"{args.runs} has no runs/ folder (cola-gym benchmark run --out {args.runs})")
        rows += suite_rows(Path(args.runs))
    text = table(rows)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
