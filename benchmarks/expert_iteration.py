"""Expert iteration against RL at equal tokens: search's answers on training problems as the policy's training data.

Each round searches fresh training problems with the current model (MCTS with the reward as
leaf value: on training problems the reward is known), keeps the answers it got right
(:mod:`cola_agents.expert_iteration`), fine-tunes the CoLA policy with stage 1b on every round's
answers so far, and evaluates the new policy on the held-out problems the benchmark suites use
(greedy, and sampled with ``--seeds`` seeds). Tokens are the search's decoder tokens, the same
unit as the RL runs' env tokens; the comparison rows are the standard micro suite's runs of the
same task (``--suite-results``) at their last evaluation. Resumable: a finished round is kept
in ``--out`` and skipped (its model is rebuilt only when a later round needs it and it is gone).

    python benchmarks/expert_iteration.py --rounds 3 --tokens-per-round 30000 \\
        --out benchmarks/results/expert-iteration-micro-countdown-medium.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import pyplot, save_figure, write_report

import cola_gym  # noqa: F401 - registers the ids
from cola_agents.agents import PriorAgent
from cola_agents.cli import main as cola_gym_main
from cola_agents.cli.demos import demonstration_rows, write_rows
from cola_agents.evaluation import evaluate
from cola_agents.expert_iteration import search_chats
from cola_agents.mcts import MCTSAgent, MCTSConfig
from cola_gym.model import CoLAModel
from cola_gym.registration import entry


def evaluate_model(model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Greedy and sampled success on the held-out problems."""
    problems = range(args.eval_problems)
    greedy = evaluate(PriorAgent(seed=0), args.eval_env, problems, n_envs=32, deterministic=True, model=model)
    sampled = [evaluate(PriorAgent(seed=seed), args.eval_env, problems, n_envs=32, deterministic=False, model=model)
               for seed in range(args.seeds)]  # fmt: skip
    return {"greedy": greedy.success_rate, "sampled": statistics.mean(r.success_rate for r in sampled),
            "sampled_per_seed": [r.success_rate for r in sampled]}  # fmt: skip


def run_round(number: int, model: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Search, keep, fine-tune, evaluate: one round from ``model``."""
    per_problem = max(1, args.tokens_per_round // args.problems_per_round)
    config = MCTSConfig(num_simulations=4096, token_budget=per_problem, leaf_value="oracle", seed=number,
                        rollout_max_tokens=entry(args.train_env).max_episode_steps or 1024)  # fmt: skip
    cola = CoLAModel.from_pretrained(model)
    first = number * args.problems_per_round
    stats: dict[str, Any] = {}
    started = time.perf_counter()
    chats = list(search_chats(MCTSAgent(cola, config), args.train_env, range(first, first + args.problems_per_round),
                              n_envs=16, show_progress=True, stats=stats, model=cola))  # fmt: skip
    search_seconds = time.perf_counter() - started
    demos = work / f"round{number}.jsonl"
    with demos.open("w") as handle:
        write_rows(handle, demonstration_rows(chats))
    data = []
    for earlier in range(number + 1):  # every round's answers so far
        data += ["--data", str(work / f"round{earlier}.jsonl")]
    out = work / f"round{number}-1b"
    started = time.perf_counter()
    code = cola_gym_main(["train", "--stage", "1b", "--model", model, *data, "--prompt-field", "messages",
                          "--response-field", "response", "--steps", str(args.steps), "--batch-size", "32",
                          "--seq-len", "64", "--warmup-steps", "5", "--lr", str(args.lr), "--min-lr", str(args.lr / 10),
                          "--responses-only", "--log-every", "20", "--checkpoint-every", str(args.steps),
                          "--out", str(out)])  # fmt: skip
    if code:
        raise SystemExit(f"stage 1b failed in round {number}")
    return {"round": number, "problems": [first, first + args.problems_per_round],
            "search_tokens": stats["search_tokens"], "solved": stats["solved"], "search_seconds": search_seconds,
            "train_seconds": time.perf_counter() - started,
            "rows_per_decoder_call": stats["rows_per_decoder_call"], "model": str(out / "final"),
            **evaluate_model(str(out / "final"), args)}  # fmt: skip


def suite_rows(args: argparse.Namespace) -> dict[str, Any]:
    """The standard micro suite's runs of the same task: start and last evaluation, per algorithm."""
    found: dict[str, Any] = {}
    task = args.eval_env.removeprefix("CoLA-").removesuffix("-v0")
    for path in sorted(Path(args.suite_results, "runs").glob(f"*__{task}__seed*.json")):
        run = json.loads(path.read_text())
        if not run.get("finished"):
            continue
        algorithm = path.name.split("__")[0]
        entry_ = found.setdefault(algorithm, {"tokens": [], "greedy": [], "sampled": [], "curves": []})
        last = run["curve"][-1]
        entry_["tokens"].append(last["env_tokens"])
        entry_["greedy"].append(last.get("greedy_success_rate", float("nan")))
        entry_["sampled"].append(last["success_rate"])
        entry_["curves"].append(
            [(p["env_tokens"], p["success_rate"], p.get("greedy_success_rate")) for p in run["curve"]]
        )
    return found


def table(report: dict[str, Any]) -> str:
    lines = ["| method | tokens (search or env) | greedy success | sampled success | seeds or runs |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    start = report["start"]
    seeds = len(start["sampled_per_seed"])
    lines.append(f"| start (the shipped prior) | 0 | {start['greedy']:.1%} | {start['sampled']:.1%} | {seeds} |")
    tokens = 0
    for row in report["rounds"]:
        tokens += row["search_tokens"]
        lines.append(f"| expert iteration, round {row['round'] + 1} ({row['solved']} answers kept) | {tokens:,} "
                     f"| {row['greedy']:.1%} | **{row['sampled']:.1%}** | {seeds} |")  # fmt: skip
    for algorithm, rows in sorted(report["suite"].items()):
        greedy, sampled = statistics.mean(rows["greedy"]), statistics.mean(rows["sampled"])
        lines.append(f"| {algorithm} (micro suite) | {statistics.mean(rows['tokens']):,.0f} | {greedy:.1%} "
                     f"| {sampled:.1%} | {len(rows['sampled'])} |")  # fmt: skip
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for axis, key, title in ((axes[0], "sampled", "sampled"), (axes[1], "greedy", "greedy")):
        for algorithm, rows in sorted(report["suite"].items()):
            if algorithm.endswith("-token") or algorithm not in ("grpo", "ppo", "grpo-token", "ppo-token", "a2c"):
                continue
            curves = np.array([[p[1] if key == "sampled" else (p[2] or np.nan) for p in c] for c in rows["curves"]])
            xs = [p[0] for p in rows["curves"][0]]
            axis.plot(xs, 100 * np.nanmean(curves, axis=0), marker="o", label=f"{algorithm} (micro suite)")
        xs, ys, tokens = [0], [report["start"][key]], 0
        for row in report["rounds"]:
            tokens += row["search_tokens"]
            xs.append(tokens)
            ys.append(row[key])
        axis.plot(xs, 100 * np.array(ys), marker="s", color="black", label="expert iteration (MCTS answers, stage 1b)")
        axis.set_xlabel("decoder tokens (RL: env tokens; expert iteration: search tokens)")
        axis.set_title(f"{report['eval_env']}: {title}")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("held-out success (%)")
    axes[0].legend(fontsize=8)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cola_gym/pretrained/micro-countdown", help="the starting CoLA model")
    parser.add_argument("--train-env", default="CoLA-Micro-Countdown-Medium-Train-v0")
    parser.add_argument("--eval-env", default="CoLA-Micro-Countdown-Medium-v0")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens-per-round", type=int, default=30_000, help="search tokens per round")
    parser.add_argument("--problems-per-round", type=int, default=256, help="fresh training problems per round")
    parser.add_argument("--steps", type=int, default=60, help="stage 1b steps per round")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--eval-problems", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=3, help="sampled evaluations")
    parser.add_argument("--suite-results", default="benchmarks/results/micro", help="RL runs to compare with")
    parser.add_argument("--work", default="runs/expert-iteration", help="demonstrations and fine-tuned models")
    parser.add_argument("--out", default="benchmarks/results/expert-iteration-micro-countdown-medium.json")
    args = parser.parse_args(argv)
    for name in ("rounds", "tokens_per_round", "problems_per_round", "steps", "eval_problems", "seeds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    out, work = Path(args.out), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "work", "rounds", "suite_results")}
    report = json.loads(out.read_text()) if out.is_file() else {}
    if report.get("settings") != settings:
        report = {"settings": settings, "eval_env": args.eval_env, "rounds": []}
    if "start" not in report:
        report["start"] = evaluate_model(args.model, args)
    model = report["rounds"][-1]["model"] if report["rounds"] else args.model
    for number in range(len(report["rounds"]), args.rounds):
        if number and not Path(model).is_dir():  # the work folder was lost: the report alone cannot go on
            raise SystemExit(f"{model} is gone: delete {out} or restore {work} to continue")
        report["rounds"].append(run_round(number, model, args, work))
        model = report["rounds"][-1]["model"]
        report["suite"] = suite_rows(args)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    report["suite"] = suite_rows(args)
    report["table"] = table(report)
    write_report(report, out, plot)
    print(report["table"])


if __name__ == "__main__":
    main()
