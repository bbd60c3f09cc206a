"""The RL benchmark protocol: suites of (algorithm, task, seed) runs at equal env-token budgets,
evaluated on fixed held-out problems, aggregated with rliable.

    from cola_agents.benchmark import load_suite, run_suite, write_report

    suite = load_suite("benchmarks/suites/micro.toml")
    run_suite(suite, "runs/micro")          # resumable; launcher="ray" for a Ray cluster
    write_report("runs/micro")              # report.json, report.md, learning_curves.png
"""

from cola_agents.benchmark.report import build_report, write_report
from cola_agents.benchmark.runner import run_one, run_suite
from cola_agents.benchmark.suite import AlgorithmSpec, RunSpec, Suite, TaskSpec, load_suite

__all__ = [
    "AlgorithmSpec",
    "RunSpec",
    "Suite",
    "TaskSpec",
    "build_report",
    "load_suite",
    "run_one",
    "run_suite",
    "write_report",
]
