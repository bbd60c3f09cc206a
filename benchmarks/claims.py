"""The paper's four claims as experiments, with seeds and confidence intervals.

1. **latent vs token**: PPO and GRPO over latent actions against PPO and GRPO over tokens (the
   token twins, starting from the decoder's own distribution), equal env-token budgets.
2. **compute**: env tokens until a run first reaches a target on the held-out problems
   (``--format-target`` of episodes rewarded at all, i.e. well-formed, and ``--success-target``).
3. **collapse**: perplexity under the bare decoder of held-out text and of the agents' own
   samples, and answer diversity (distinct answers per problem), before RL (the prior) and
   after, with and without GRPO's KL term.
4. **semantic diversity** of the trained agents' samples (mean pairwise cosine similarity of
   all-MiniLM-L6-v2 embeddings within each problem's group, as ``benchmarks/diversity.py``).

All four read one suite of runs (``cola-gym benchmark`` protocol, resumable):

    python benchmarks/claims.py --suite benchmarks/suites/claims-micro.toml --out benchmarks/results/claims-micro

Parts: ``--parts runs latent-vs-token compute collapse diversity`` (default: all). Writes one
JSON, PNG and Markdown table per claim into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from _report import pyplot

from cola_agents.agents import BoundAgent, PriorAgent, merge_agent_env_kwargs
from cola_agents.benchmark import load_suite, run_suite
from cola_agents.benchmark.report import build_report, markdown_table, plot_curves
from cola_agents.benchmark.runner import algorithm_class, read_result, run_path
from cola_agents.benchmark.suite import RunSpec, Suite
from cola_gym.model import shared_model
from cola_gym.registration import entry as registry_entry

PARTS = ("runs", "latent-vs-token", "compute", "collapse", "diversity")
LATENT_VS_TOKEN = ("grpo", "ppo", "grpo-token", "ppo-token")


# ---------------------------------------------------------------- claim 1
def latent_vs_token(suite: Suite, out: Path, reps: int) -> dict[str, Any]:
    results = [r for r in _results(suite, out) if r["run"]["algorithm"]["name"] in LATENT_VS_TOKEN]
    report = build_report(results, reps=reps)
    _save(out, "latent_vs_token", report, markdown_table(report))
    plot_curves(report, out / "latent_vs_token.png", "latent vs token actions at equal env-token budgets")
    return report


# ---------------------------------------------------------------- claim 2
def tokens_to_target(curve: list[dict[str, Any]], key: str, target: float) -> float | None:
    """Env tokens at the first evaluation whose ``key`` reaches ``target`` (``None``: never)."""
    for point in curve:
        if point[key] >= target:
            return float(point["env_tokens"])
    return None


def compute(suite: Suite, out: Path, format_target: float, success_target: float) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for result in _results(suite, out):
        name = result["run"]["algorithm"]["name"]
        entry = table.setdefault(name, {"format": [], "success": []})
        entry["format"].append(tokens_to_target(result["curve"], "rewarded_rate", format_target))
        entry["success"].append(tokens_to_target(result["curve"], "success_rate", success_target))
    report: dict[str, Any] = {"format_target": format_target, "success_target": success_target,
                              "budget": suite.budget, "algorithms": {}}  # fmt: skip
    for name, entry in table.items():
        report["algorithms"][name] = {key: _reach_summary(values, suite.budget) for key, values in entry.items()}
    lines = [f"| algorithm | tokens to {format_target:.0%} well-formed | tokens to {success_target:.0%} success |",
             "| --- | --- | --- |"]  # fmt: skip
    for name, entry in sorted(report["algorithms"].items()):
        lines.append(f"| {name} | {_reach_cell(entry['format'])} | {_reach_cell(entry['success'])} |")
    lines += ["", "Median env tokens over seeds (runs that never reached the target count as the budget, "
              "a lower bound), reached runs / all runs; 95 % bootstrap CI of the median in brackets."]  # fmt: skip
    _save(out, "compute", report, "\n".join(lines) + "\n")
    _plot_compute(report, out / "compute.png")
    return report


def _reach_summary(values: list[float | None], budget: int) -> dict[str, Any]:
    filled = np.array([budget if v is None else v for v in values], dtype=float)
    rng = np.random.default_rng(0)
    medians = [np.median(rng.choice(filled, size=len(filled))) for _ in range(2000)]
    return {"median": float(np.median(filled)), "ci": [float(np.percentile(medians, 2.5)),
            float(np.percentile(medians, 97.5))], "reached": sum(v is not None for v in values),
            "runs": len(values), "values": values}  # fmt: skip


def _reach_cell(entry: dict[str, Any]) -> str:
    low, high = entry["ci"]
    return f"{entry['median']:,.0f} [{low:,.0f}, {high:,.0f}] ({entry['reached']}/{entry['runs']})"


def _plot_compute(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    names = sorted(report["algorithms"])
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for axis, key, label in ((axes[0], "format", "well-formed"), (axes[1], "success", "success")):
        medians = [report["algorithms"][n][key]["median"] for n in names]
        low = [m - report["algorithms"][n][key]["ci"][0] for n, m in zip(names, medians, strict=True)]
        high = [report["algorithms"][n][key]["ci"][1] - m for n, m in zip(names, medians, strict=True)]
        axis.bar(names, medians, yerr=[low, high], capsize=4, color="tab:blue", alpha=0.8)
        axis.axhline(report["budget"], color="grey", linestyle="--", linewidth=1, label="budget")
        target = report[f"{key}_target"]
        axis.set_title(f"env tokens to {target:.0%} {label}")
        axis.tick_params(axis="x", rotation=30)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ---------------------------------------------------------------- claims 3 and 4: the agents' samples
def sample_agent(agent: Any, env_id: str, problems: range, group: int, env_kwargs: dict[str, Any]) -> list[dict]:
    """``group`` sampled episodes of each problem (one batch per problem); text, answer, reward, success."""
    kwargs = merge_agent_env_kwargs(agent, env_kwargs)
    vector = gym.make_vec(env_id, num_envs=group, vectorization_mode="vector_entry_point", **kwargs)
    if isinstance(agent, BoundAgent):
        agent.bind(vector)
    samples = []
    for problem in problems:
        obs, _ = vector.reset(options=[{"task_index": problem}] * group)  # type: ignore[arg-type]
        done = np.zeros(group, dtype=bool)
        while not done.all():
            actions, _ = agent.predict(obs, deterministic=False)
            obs, rewards, terminated, truncated, infos = vector.step(actions)
            for row in np.flatnonzero((terminated | truncated) & ~done):
                final = infos["final_info"]
                samples.append({"problem": problem, "text": str(final["text"][row]),
                                "answer": str(final["answer"][row]), "reward": float(rewards[row]),
                                "success": bool(final["is_success"][row])})  # fmt: skip
            done |= terminated | truncated
    vector.close()
    return samples


def decoder_perplexity(model: Any, prompts: list[str], responses: list[str]) -> float:
    """exp(mean NLL) of the responses' tokens after their prompts under the bare decoder."""
    total, count = 0.0, 0
    for prompt, response in zip(prompts, responses, strict=True):
        prompt_ids = model.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        response_ids = model.tokenizer(response + model.tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + response_ids])
        with torch.no_grad():
            logits = model.decoder_logits(model.hidden_states(ids))[0, len(prompt_ids) - 1 : -1].float()
        nll = torch.nn.functional.cross_entropy(logits, ids[0, len(prompt_ids) :].to(logits.device), reduction="sum")
        total, count = total + float(nll), count + len(response_ids)
    return math.exp(total / max(count, 1))


def _agents(suite: Suite, out: Path) -> dict[str, list[tuple[RunSpec | None, Any]]]:
    """Every finished run's final agent by algorithm, plus the prior (the agents' common start)."""
    agents: dict[str, list[tuple[RunSpec | None, Any]]] = {"prior": [(None, PriorAgent(top_k=10**6, seed=0))]}
    for run in suite.runs():
        result = read_result(run_path(out / "runs", run))
        checkpoint = out / "runs" / "checkpoints" / run.name / "agent.zip"
        if result is None or not result.get("finished") or not checkpoint.is_file():
            continue
        agents.setdefault(run.algorithm.name, []).append((run, algorithm_class(run).load(checkpoint)))
    return agents


def samples_of_agents(suite: Suite, out: Path, problems: int, group: int) -> dict[str, list[dict]]:
    """Samples of every agent on the first task's held-out problems (cached in ``samples.json``)."""
    cache = out / "samples.json"
    if cache.is_file():
        found = json.loads(cache.read_text())
        if found.get("problems") == problems and found.get("group") == group:
            return found["samples"]
    task = suite.tasks[0]
    env_kwargs = {"observation": "hidden+prior", **suite.env_kwargs}
    samples: dict[str, list[dict]] = {}
    for name, runs in _agents(suite, out).items():
        for run, agent in runs:
            token = run is not None and run.algorithm.actions == "token"
            env_id = registry_entry(task.eval).token_twin or task.eval if token else task.eval
            drawn = sample_agent(agent, env_id, range(problems), group, env_kwargs)
            samples.setdefault(name, []).extend({**s, "seed": None if run is None else run.seed} for s in drawn)
            print(f"sampled {name} seed {None if run is None else run.seed}: "
                  f"{statistics.mean(s['success'] for s in drawn):.0%} success")  # fmt: skip
    cache.write_text(json.dumps({"problems": problems, "group": group, "samples": samples}))
    return samples


def collapse(suite: Suite, out: Path, samples: dict[str, list[dict]]) -> dict[str, Any]:
    task_env = gym.make(suite.tasks[0].eval, **suite.env_kwargs)
    task = task_env.unwrapped.task  # type: ignore[attr-defined]
    model = shared_model(task_env.unwrapped.model.name_or_path)  # type: ignore[attr-defined]
    tokenizer = model.tokenizer

    def prompt(problem: int) -> str:
        messages = task.prompt(task.puzzle(problem))
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    held_out = list(task.demonstrations())[: max(len({s["problem"] for s in v}) for v in samples.values())]
    held_out_ppl = decoder_perplexity(model, [prompt(i) for i in range(len(held_out))], [r for _, r in held_out])
    report: dict[str, Any] = {"held_out_text_perplexity": held_out_ppl, "agents": {}}
    for name, drawn in samples.items():
        by_problem: dict[int, list[str]] = {}
        for s in drawn:
            by_problem.setdefault(s["problem"] * 1000 + (s["seed"] or 0), []).append(s["answer"])
        distinct = [len(set(answers)) / len(answers) for answers in by_problem.values()]
        texts = [s["text"] for s in drawn]
        report["agents"][name] = {
            "samples": len(drawn),
            "success_rate": statistics.mean(s["success"] for s in drawn),
            "sample_perplexity": decoder_perplexity(model, [prompt(s["problem"]) for s in drawn], texts),
            "distinct_answer_share": statistics.mean(distinct),
            "held_out_text_perplexity": held_out_ppl,
        }
    lines = ["| agent | samples | success | perplexity of own samples | held-out text perplexity | distinct answers |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, entry in report["agents"].items():
        lines.append(f"| {name} | {entry['samples']} | {entry['success_rate']:.0%} | {entry['sample_perplexity']:.2f} "
                     f"| {entry['held_out_text_perplexity']:.3f} | {entry['distinct_answer_share']:.2f} |")  # fmt: skip
    lines += ["", "Perplexities under the bare decoder. RL here trains only the policy over latent codes (or over "
              "tokens), never the decoder, so held-out text perplexity cannot move; a collapse would show in the "
              "agents' own samples (perplexity) and in fewer distinct answers per problem."]  # fmt: skip
    _save(out, "collapse", report, "\n".join(lines) + "\n")
    _plot_bars(report["agents"], ("sample_perplexity", "distinct_answer_share"), out / "collapse.png")
    return report


def diversity(out: Path, samples: dict[str, list[dict]]) -> dict[str, Any]:
    from diversity import SentenceEmbedder, mean_pairwise_similarity

    embedder = SentenceEmbedder()
    report: dict[str, Any] = {"agents": {}}
    for name, drawn in samples.items():
        groups: dict[tuple[int, Any], list[str]] = {}
        for s in drawn:
            groups.setdefault((s["problem"], s["seed"]), []).append(s["text"])
        similarities = [mean_pairwise_similarity(embedder(texts)) for texts in groups.values() if len(texts) > 1]
        mean = statistics.mean(similarities)
        rng = np.random.default_rng(0)
        boots = [np.mean(rng.choice(similarities, size=len(similarities))) for _ in range(2000)]
        report["agents"][name] = {"mean_similarity": mean, "ci": [float(np.percentile(boots, 2.5)),
                                  float(np.percentile(boots, 97.5))], "diversity": 1 / mean,
                                  "groups": len(similarities)}  # fmt: skip
    lines = [
        "| agent | groups | mean pairwise cosine similarity | diversity (1 / similarity) |",
        "| --- | --- | --- | --- |",
    ]
    for name, entry in report["agents"].items():
        low, high = entry["ci"]
        lines.append(f"| {name} | {entry['groups']} | {entry['mean_similarity']:.3f} [{low:.3f}, {high:.3f}] | "
                     f"{entry['diversity']:.2f} |")  # fmt: skip
    _save(out, "diversity", report, "\n".join(lines) + "\n")
    _plot_bars(report["agents"], ("diversity",), out / "diversity.png")
    return report


# ---------------------------------------------------------------- helpers
def _results(suite: Suite, out: Path) -> list[dict[str, Any]]:
    found = [read_result(run_path(out / "runs", run)) for run in suite.runs()]
    return [r for r in found if r is not None and r["curve"]]


def _save(out: Path, name: str, report: dict[str, Any], table: str) -> None:
    (out / f"{name}.json").write_text(json.dumps(report, indent=1))
    (out / f"{name}.md").write_text(table)
    print(f"\n== {name} ==\n{table}")


def _plot_bars(agents: dict[str, dict[str, Any]], keys: tuple[str, ...], path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    names = list(agents)
    for axis, key in zip(axes[0], keys, strict=True):
        axis.bar(names, [agents[n][key] for n in names], color="tab:green", alpha=0.8)
        axis.set_title(key.replace("_", " "))
        axis.tick_params(axis="x", rotation=30)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="benchmarks/suites/claims-micro.toml")
    parser.add_argument("--out", default="benchmarks/results/claims-micro")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--seeds", type=int, nargs="+", help="override the suite's seeds")
    parser.add_argument("--budget", type=int, help="override the suite's budget")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--format-target", type=float, default=0.9)
    parser.add_argument("--success-target", type=float, default=0.5)
    parser.add_argument("--sample-problems", type=int, default=16, help="collapse/diversity: held-out problems")
    parser.add_argument("--group", type=int, default=8, help="collapse/diversity: samples per problem")
    args = parser.parse_args()
    suite = load_suite(args.suite, seeds=args.seeds, budget=args.budget)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if "runs" in args.parts:
        run_suite(suite, out / "runs")
    if "latent-vs-token" in args.parts:
        latent_vs_token(suite, out, args.reps)
    if "compute" in args.parts:
        compute(suite, out, args.format_target, args.success_target)
    if {"collapse", "diversity"} & set(args.parts):
        samples = samples_of_agents(suite, out, args.sample_problems, args.group)
        if "collapse" in args.parts:
            collapse(suite, out, samples)
        if "diversity" in args.parts:
            diversity(out, samples)


if __name__ == "__main__":
    main()
