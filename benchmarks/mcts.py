"""MCTS-Q: expansion speed against the re-encoding reference, and accuracy at equal token budgets.

Part 1 (``--part speed``), side by side in one run:

- expansions per second against prefix length (64 .. 1024 tokens) for the KV-reusing
  search model vs the re-encoding reference (what the authors' release does);
- expansions per second with 1 vs 16 leaves expanded in one batched step.

Part 2 (``--part accuracy``): on a fixed subset of held-out problems, with seeds, the
greedy BC policy vs best-of-N vs MCTS with Q-network leaf values vs MCTS with the env's
reward (oracle), MCTS and best-of-N holding the same decoder-token budget per problem.

    python benchmarks/mcts.py --part speed
    python benchmarks/mcts.py --part accuracy --env CoLA-GSM8K-v0 --problems 16 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from _report import pyplot, save_figure, write_report

import cola_gym  # noqa: F401 - registers the ids
from cola_agents import PriorAgent
from cola_agents.evaluation import evaluate
from cola_agents.mcts import BestOfNAgent, CoLASearchModel, MCTSAgent, MCTSConfig
from cola_agents.mcts.reference import ReencodingSearchModel
from cola_gym.model import shared_model


def _long_problem(model: Any, tokens: int) -> str:
    """Text of about ``tokens`` tokens (a MATH-style passage, repeated)."""
    passage = ("Let $x$ be the number of apples. Then $3x + 5 = 20$, so $3x = 15$ and $x = 5$. "
               "We check: $3 \\cdot 5 + 5 = 20$. ")  # fmt: skip
    ids = model.tokenizer(passage * (tokens // 8 + 1), add_special_tokens=False)["input_ids"][:tokens]
    return model.tokenizer.decode(ids)


def _root_env(model_ref: str | None, model: Any, prefix_tokens: int, env_kwargs: dict[str, Any]) -> Any:
    env = gym.make("CoLA-GSM8K-v0", model=model_ref, track_policy=True, track_q=model.q_network is not None,
                   **env_kwargs).unwrapped  # fmt: skip
    env.reset(options={"problem": _long_problem(model, prefix_tokens), "answer": "5"})
    return env


def speed(args: argparse.Namespace, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    model = shared_model(args.model)
    per_length: dict[str, dict[str, float]] = {}
    for length in args.prefix_lengths:
        env = _root_env(args.model, model, length, env_kwargs)
        cached, reference = CoLASearchModel.for_env(env), ReencodingSearchModel.for_env(env)
        cached_root = cached.root(env.episode, env.decoding_state)[0]
        reference_root = reference.root(env.episode, env.prompt_ids)[0]
        timings: dict[str, list[float]] = {"kv_reuse": [], "reencode": []}
        for round_index in range(args.rounds + 1):
            for name, search_model, root in (
                ("kv_reuse", cached, cached_root),
                ("reencode", reference, reference_root),
            ):
                started = time.perf_counter()
                for action in range(args.expansions):
                    search_model.step([root], [action])
                if round_index:
                    timings[name].append(args.expansions / (time.perf_counter() - started))
        per_length[str(env.decoding_state.length)] = {k: statistics.median(v) for k, v in timings.items()}
        row = per_length[str(env.decoding_state.length)]
        row["speedup"] = row["kv_reuse"] / row["reencode"]
        print(f"prefix {env.decoding_state.length}: {row}", flush=True)
    env = _root_env(args.model, model, args.batch_prefix, env_kwargs)
    cached = CoLASearchModel.for_env(env)
    root = cached.root(env.episode, env.decoding_state)[0]
    batched: dict[int, list[float]] = {1: [], args.parallel_leaves: []}
    for round_index in range(args.rounds + 1):
        for leaves in batched:
            started = time.perf_counter()
            for _ in range(args.expansions):
                cached.step([root] * leaves, list(range(leaves)))
            if round_index:
                batched[leaves].append(leaves * args.expansions / (time.perf_counter() - started))
    parallel = {str(k): statistics.median(v) for k, v in batched.items()}
    parallel["speedup"] = parallel[str(args.parallel_leaves)] / parallel["1"]
    print(f"batched leaves at prefix {args.batch_prefix}: {parallel}", flush=True)
    return {"model": args.model or "default", "expansions_per_s_by_prefix": per_length, "batched_leaves": parallel}


def accuracy(args: argparse.Namespace, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    model = shared_model(args.model)
    problems = list(range(args.first_problem, args.first_problem + args.problems))
    kwargs = {**env_kwargs, "model": args.model, "max_episode_steps": args.max_tokens}
    results: dict[str, list[dict[str, float]]] = {}
    for seed in args.seeds:
        search = MCTSConfig(num_simulations=args.simulations, rollout_max_tokens=args.max_tokens,
                            macro_max_tokens=min(64, args.max_tokens), token_budget=args.token_budget,
                            stop_on_finished_answer=True, parallel_expansions=args.parallel_expansions,
                            seed=seed)  # fmt: skip
        agents: dict[str, Any] = {
            "greedy_bc_policy": PriorAgent(model.num_actions, seed=seed),
            "best_of_n": BestOfNAgent(model, num_samples=args.best_of_n,
                                      config=MCTSConfig(**{**search.__dict__, "leaf_value": "oracle"})),
            "mcts_oracle": MCTSAgent(model, MCTSConfig(**{**search.__dict__, "leaf_value": "oracle"})),
        }  # fmt: skip
        if model.q_network is not None:
            agents["best_of_n_q"] = BestOfNAgent(model, num_samples=args.best_of_n, config=search)
            agents["mcts_q_network"] = MCTSAgent(model, search)
        for name, agent in agents.items():
            started = time.perf_counter()
            result = evaluate(agent, args.env, problems, n_envs=args.n_envs, show_progress=True, **kwargs)
            summary = result.summary()
            stats = getattr(agent, "stats", None)
            if stats is not None:
                summary["search_tokens_per_problem"] = stats.tokens / len(problems)
            summary["seconds"] = time.perf_counter() - started
            results.setdefault(name, []).append(summary)
            print(f"seed {seed} {name}: {summary}", flush=True)
    return {
        "model": args.model or "default", "env": args.env,
        "problems": problems, "seeds": args.seeds, "token_budget": args.token_budget,
        "simulations": args.simulations, "best_of_n": args.best_of_n, "max_tokens": args.max_tokens,
        "by_agent": {name: {"accuracy_mean": statistics.mean(r["accuracy"] for r in runs), "runs": runs}
                     for name, runs in results.items()},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("speed", "accuracy", "both"), default="both")
    parser.add_argument("--model", default=None, help="CoLA checkpoint (default: the default model)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--prefix-lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--expansions", type=int, default=4, help="expansions per speed measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-prefix", type=int, default=256)
    parser.add_argument("--parallel-leaves", type=int, default=16)
    parser.add_argument("--env", default="CoLA-GSM8K-v0")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--first-problem", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--simulations", type=int, default=16)
    parser.add_argument("--best-of-n", type=int, default=16)
    parser.add_argument("--parallel-expansions", type=int, default=1, help="MCTS nodes expanded per wave")
    parser.add_argument("--max-tokens", type=int, default=256, help="token limit of episodes and rollouts")
    parser.add_argument("--token-budget", type=int, default=2048, help="decoder tokens per problem, all methods")
    parser.add_argument("--n-envs", type=int, default=8, help="problems searched together")
    parser.add_argument("--out", default="benchmarks/results/mcts.json")
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    env_kwargs: dict[str, Any] = {"data_dir": args.data_dir} if args.data_dir else {}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    if args.part in ("speed", "both"):
        report["speed"] = speed(args, env_kwargs)
    if args.part in ("accuracy", "both"):
        report["accuracy"] = accuracy(args, env_kwargs)
    write_report(report, out, _plot)


def _plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()

    panels = [key for key in ("speed", "accuracy") if key in report]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.4), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        if key == "speed":
            rows = report["speed"]["expansions_per_s_by_prefix"]
            lengths = [int(k) for k in rows]
            ax.plot(lengths, [rows[str(n)]["kv_reuse"] for n in lengths], marker="o", label="KV reuse (ours)")
            ax.plot(lengths, [rows[str(n)]["reencode"] for n in lengths], marker="s", label="re-encoding reference")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("prefix length (tokens)")
            ax.set_ylabel("expansions / s")
            batched = report["speed"]["batched_leaves"]
            ax.set_title(f"expansion cost; batched leaves {batched['speedup']:.1f}x", fontsize=9)
            ax.legend(fontsize=8)
        else:
            agents = report["accuracy"]["by_agent"]
            names = list(agents)
            ax.bar([n.replace("_", "\n") for n in names], [agents[n]["accuracy_mean"] for n in names])
            ax.set_ylim(0, 1)
            ax.set_ylabel("accuracy")
            ax.set_title(f"{report['accuracy']['env']}: {len(report['accuracy']['problems'])} problems, "
                         f"{report['accuracy']['token_budget']} tokens each", fontsize=9)  # fmt: skip
            ax.tick_params(axis="x", labelsize=7)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
