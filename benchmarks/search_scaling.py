"""Test-time search against sampling at equal decoder tokens: accuracy from 1x to 64x a greedy answer.

On one task's held-out problems, with seeds, every method gets the same budget of decoder
tokens per problem, counted in units of the greedy answer's mean length (1x, 2x, ... 64x):

- ``greedy``: the CoLA policy prior, argmax (1x);
- ``best_of_n_q``: policy samples (top-k 40, T = 1) drawn until the budget is spent, the one
  the Q-network values most is the answer (Q of its last step, or with ``--leaf-q path_mean``
  the mean Q of all its steps, as MCTS-Q's leaves; how well Q ranks a problem's own answers is
  reported as ``q_auc_within_problem``);
- ``majority_vote``: the same samples, the most frequent final answer (text with spaces
  removed; ties go to the answer sampled first);
- ``best_of_n_oracle``: the same samples, right if any is right (pass@N: an upper bound);
- ``greedy_then_best_of_n_q``: the greedy answer first, then samples while the budget lasts,
  the one the Q-network values most is the answer (the prior's argmax is the best single
  candidate; samples only replace it when Q prefers them);
- ``mcts_q``: MCTS-Q with Q-network leaf values under the budget (``--mcts-budgets``);
- ``mcts_oracle``: MCTS with the env's reward as leaf value (an upper bound);
- ``rl_*`` (with ``--rl-agents``): an RL-trained agent of the benchmark suites in place of the
  prior: its greedy answer (``rl_greedy``) and the four sampling methods over its own samples,
  ranked by the same Q-network (one agent per seed, in the order given); with ``--rl-search``
  also ``rl_mcts_q``, MCTS-Q with the agent's policy as the search's prior and rollout policy.

The three sampling methods are read off one pool of ``max(budgets) x`` samples per problem
(the first samples that fit each budget), so they differ only in how they choose. Each MCTS
point is its own search. Tree statistics (nodes, answers from a finished node vs a rollout,
tokens spent) are kept for every search. The report is written after every seed, and a run
started again with the same settings and ``--out`` resumes after the last seed written.

Every row's point also holds ``paired``: its accuracy minus best-of-N's, majority vote's and
the RL agent's best-of-N at that budget, with a CI over the same problems (the problems'
difficulty cancels, so it is narrower than either row's own); ``--compare`` pairs rows of two
reports of the same problems.

    python benchmarks/search_scaling.py --model runs/q/final --env CoLA-Micro-Countdown-Medium-v0
    python benchmarks/search_scaling.py --compare A.json:mcts_q B.json:best_of_n_q
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from _report import pyplot, save_figure, write_report
from tqdm import tqdm

import cola_gym  # noqa: F401 - registers the ids
from cola_agents import PriorAgent
from cola_agents.agents import Agent, BoundAgent, agent_env_kwargs, base_env
from cola_agents.algorithms import algorithm_class, algorithm_names
from cola_agents.evaluation import evaluate
from cola_agents.mcts import CoLASearchModel, MCTSAgent, MCTSConfig
from cola_agents.mcts.config import LeafQ, LeafValue
from cola_gym.envs.observation import ObservationLayout
from cola_gym.envs.vector import LatentActionVectorEnv
from cola_gym.model import shared_model
from cola_gym.training.objectives import ranking_auc

SAMPLING = ("best_of_n_q", "majority_vote", "best_of_n_oracle", "greedy_then_best_of_n_q")
SEARCHES = ("mcts_q", "mcts_oracle", "rl_mcts_q")
"""The search rows (each budget's own search), beside the sampling methods read off one pool."""


def problem_indices(args: argparse.Namespace) -> list[int]:
    """The problems searched: ``--problems`` of them from ``--first-problem`` on."""
    return list(range(args.first_problem, args.first_problem + args.problems))


def sample_pool(args: argparse.Namespace, seed: int, count: int, config: MCTSConfig) -> list[list[dict[str, Any]]]:
    """Per problem, the greedy answer then ``count`` policy samples: tokens, reward, Q score and
    final answer of each."""
    model = shared_model(args.model)
    generator = torch.Generator().manual_seed(seed)
    pool: list[list[dict[str, Any]]] = []
    problems = problem_indices(args)
    bar = tqdm(total=len(problems) * count, desc=f"sampling (seed {seed})", unit="sample")
    for first in range(0, len(problems), args.n_envs):
        chunk = problems[first : first + args.n_envs]
        vector = gym.make_vec(args.env, num_envs=len(chunk), vectorization_mode="vector_entry_point",
                              model=args.model, track_policy=True, track_q=True).unwrapped  # fmt: skip
        assert isinstance(vector, LatentActionVectorEnv)
        vector.reset(options=[{"task_index": index} for index in chunk])
        state = vector.decoding_state
        assert state is not None
        search_model = CoLASearchModel.for_env(vector)
        roots = [search_model.root(episode, state.select([row]))[0] for row, episode in enumerate(vector.episodes)]
        samples: list[list[dict[str, Any]]] = [[] for _ in chunk]
        for draw in range(count + 1):
            policy = replace(config, rollout_policy="greedy" if draw == 0 else "sample")
            for row, rollout in enumerate(search_model.rollout(roots, policy, generator)):
                text = model.tokenizer.decode(rollout.tokens, skip_special_tokens=True)
                samples[row].append({"tokens": len(rollout.actions), "reward": float(rollout.reward),
                                     "q": float(rollout.score), "answer": "".join(text.split())})  # fmt: skip
            bar.update(len(chunk) if draw else 0)
        pool += samples
        vector.close()
    bar.close()
    return pool


def agent_pool(args: argparse.Namespace, seed: int, count: int, agent: Agent) -> list[list[dict[str, Any]]]:
    """As :func:`sample_pool`, from an SB3 agent instead of the prior: per problem, the agent's
    greedy answer then ``count`` of its samples, each scored by the Q-network's value of the
    agent's actions (``--leaf-q``)."""
    torch.manual_seed(seed)  # SB3 samples with torch's global generator
    space = getattr(agent, "observation_space", None)  # an SB3 agent: its policy reads the prior or not
    observation = {"observation": "hidden+prior"} if space is not None and ObservationLayout.of(space).prior else {}
    recorder = QRecorder(agent, args.leaf_q)
    draws = []
    for draw in tqdm(range(count + 1), desc=f"sampling the RL agent (seed {seed})", unit="draw"):
        result = evaluate(recorder, args.env, problem_indices(args), n_envs=args.n_envs, deterministic=draw == 0,
                          keep_text=True, model=args.model, max_episode_steps=args.max_tokens,
                          **observation)  # fmt: skip
        draws.append([{"tokens": tokens, "reward": reward, "q": q, "answer": "".join(text.split())}
                      for tokens, reward, q, text in zip(result.tokens, result.rewards, recorder.take(),
                                                         result.texts, strict=True)])  # fmt: skip
    return [list(samples) for samples in zip(*draws, strict=True)]


class QRecorder:
    """An agent played through :func:`~cola_agents.evaluation.evaluate` that also keeps, per
    episode, the Q-network's value of its answer as ``leaf_q`` reads it: Q of its last action
    (``"last"``) or the mean Q of all its actions (``"path_mean"``); rows whose episode has
    ended keep theirs."""

    def __init__(self, agent: Agent, leaf_q: LeafQ) -> None:
        self.agent, self.leaf_q = agent, leaf_q
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def env_kwargs(self) -> dict[str, Any]:
        return {**agent_env_kwargs(self.agent), "track_q": True}

    def bind(self, env: Any) -> None:
        self.env = base_env(env)
        self.chunks.append((np.zeros(self.env.num_envs), np.zeros(self.env.num_envs), np.zeros(self.env.num_envs)))
        self.idle = np.zeros(self.env.num_envs, dtype=bool)
        if isinstance(self.agent, BoundAgent):
            self.agent.bind(env)

    def set_idle_rows(self, rows: Iterable[int]) -> None:
        self.idle[list(rows)] = True

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:  # fmt: skip
        actions, state = self.agent.predict(observation, state, episode_start, deterministic)
        q_values = self.env.decoding_state.q_values
        assert q_values is not None
        q = q_values[torch.arange(len(actions)), torch.as_tensor(actions, dtype=torch.long)].float().cpu().numpy()
        last, total, steps = self.chunks[-1]
        last[:] = np.where(self.idle, last, q)
        total += np.where(self.idle, 0.0, q)
        steps += ~self.idle
        return actions, state

    def take(self) -> list[float]:
        """The values of the episodes played since the last call, in order."""
        last, total, steps = (np.concatenate(parts) for parts in zip(*self.chunks, strict=True))
        self.chunks = []
        values = total / np.maximum(steps, 1) if self.leaf_q == "path_mean" else last
        return values.tolist()


def first_that_fit(candidates: list[dict[str, Any]], budget: float) -> tuple[list[dict[str, Any]], int]:
    """The first ``candidates`` whose tokens fit ``budget`` (at least one), and their tokens."""
    taken: list[dict[str, Any]] = []
    spent = 0
    for candidate in candidates:
        if taken and spent + candidate["tokens"] > budget:
            break
        taken.append(candidate)
        spent += candidate["tokens"]
    return taken, spent


def choose(pool: list[dict[str, Any]], budget: float) -> dict[str, Any]:
    """The sampling methods' verdicts on one problem's pool (greedy answer first, then samples)."""
    taken, spent = first_that_fit(pool[1:], budget)
    votes = Counter(s["answer"] for s in taken)
    top = max(votes.values())
    winner = next(s for s in taken if votes[s["answer"]] == top)
    with_greedy, _ = first_that_fit(pool, budget)
    return {
        "samples": len(taken),
        "tokens": spent,
        "best_of_n_q": max(taken, key=lambda s: s["q"])["reward"],
        "majority_vote": winner["reward"],
        "best_of_n_oracle": max(s["reward"] for s in taken),
        "greedy_then_best_of_n_q": max(with_greedy, key=lambda s: s["q"])["reward"],
    }


def within_problem_auc(pool: list[list[dict[str, Any]]]) -> dict[str, float]:
    """How well Q ranks one problem's own samples (what best-of-N needs): the mean over problems
    with right and wrong samples of the AUC of Q against the reward, and how many such problems."""
    aucs = [ranking_auc([s["q"] for s in samples], [s["reward"] > 0.5 for s in samples]) for samples in pool]
    mixed = [auc for auc in aucs if not math.isnan(auc)]
    return {"mean": statistics.mean(mixed) if mixed else math.nan, "problems": len(mixed)}


TREE_SHAPE = ("exploration_constant", "root_width", "node_width", "macro_td_threshold")


def tree_shape(args: argparse.Namespace) -> dict[str, Any]:
    """The tree-shape options given on the command line (an option left out keeps
    ``MCTSConfig``'s default, so reports written before the options existed still resume)."""
    return {name: getattr(args, name) for name in TREE_SHAPE if getattr(args, name, None) is not None}


def mcts_config(args: argparse.Namespace, seed: int, budget: int, leaf_value: LeafValue) -> MCTSConfig:
    """The search one MCTS point runs: the command line's options under a ``budget`` of tokens."""
    return MCTSConfig(num_simulations=args.simulations, rollout_max_tokens=args.max_tokens,
                      macro_max_tokens=min(64, args.max_tokens), token_budget=budget, leaf_value=leaf_value,
                      leaf_q=args.leaf_q, merge_aliases=args.merge_aliases,
                      reuse_greedy_rollouts=args.reuse_greedy_rollouts,
                      stop_on_finished_answer=args.stop_on_finished_answer,
                      parallel_expansions=args.parallel_expansions, seed=seed,
                      rollout_policy=args.rollout_policy, rollout_temperature=args.rollout_temperature,
                      **tree_shape(args))  # fmt: skip


def mcts_point(
    args: argparse.Namespace, seed: int, budget: int, leaf_value: LeafValue, prior_agent: Agent | None = None
) -> dict[str, Any]:
    """MCTS with ``budget`` decoder tokens per problem (from ``prior_agent``'s policy if given, else
    the CoLA prior's): accuracy, tokens spent and tree statistics."""
    model = shared_model(args.model)
    agent = MCTSAgent(model, mcts_config(args, seed, budget, leaf_value), prior_agent)
    started = time.perf_counter()
    result = evaluate(agent, args.env, problem_indices(args), n_envs=args.n_envs, model=args.model,
                      max_episode_steps=args.max_tokens)  # fmt: skip
    seconds = time.perf_counter() - started
    searches = agent.stats.results
    return {
        "successes": [bool(s) for s in result.successes],
        "accuracy": result.success_rate,
        "tokens_per_problem": agent.stats.tokens / max(agent.stats.searches, 1),
        "nodes_per_search": statistics.mean(r.simulations for r in searches) if searches else 0.0,
        "from_finished_node": statistics.mean(r.from_finished_node for r in searches) if searches else 0.0,
        "nodes_per_s": sum(r.simulations for r in searches) / seconds,
        "tokens_per_s": agent.stats.tokens / seconds,
        "search_tokens_per_s": agent.stats.tokens_per_s,
        "rows_per_decoder_call": agent.stats.rows_per_call,
        "seconds": seconds,
    }


def bootstrap_ci(values: np.ndarray, reps: int = 2000, seed: int = 0) -> list[float]:
    """95 % percentile bootstrap CI of the mean of ``values`` (``[seeds, problems]``), resampling
    problems: every seed poses the same problems, and a deterministic method (greedy, MCTS with
    greedy rollouts) repeats its answers, so seeds are not independent draws."""
    per_problem = np.asarray(values, dtype=float).reshape(len(values), -1).mean(axis=0)
    rng = np.random.default_rng(seed)
    means = rng.choice(per_problem, size=(reps, per_problem.size), replace=True).mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


PAIRED_BASELINES = ("best_of_n_q", "majority_vote", "rl_best_of_n_q")
"""The rows every other row at the same budget is compared with, problem by problem."""


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Accuracy of ``a`` minus ``b`` (each ``[seeds, problems]``, the same problems in the same
    order) with the 95 % bootstrap CI of the difference, resampling problems: both methods meet
    the same problems, so the problems' difficulty cancels and the CI is narrower than either
    method's own."""
    a, b = (np.asarray(x, dtype=float).reshape(len(x), -1).mean(axis=0) for x in (a, b))
    if a.shape != b.shape:
        raise ValueError(f"paired rows need the same problems: {a.size} against {b.size}")
    return {"difference": float((a - b).mean()), "ci": bootstrap_ci((a - b)[None])}


def report_budgets(settings: dict[str, Any]) -> list[int]:
    """Every budget a report has points at: the sampling methods', the RL agent's and, with
    ``--rl-search``, its searches'."""
    searched = settings.get("mcts_budgets", []) if settings.get("rl_search") else []
    return sorted({*settings["budgets"], *settings.get("rl_budgets", []), *searched})


def resummarize(path: Path) -> None:
    """Recomputes a saved report's summary and figure from its per-seed runs (``--summarize``)."""
    report = json.loads(path.read_text())
    report["summary"] = summarize(report["runs"], report_budgets(report["settings"]))
    write_report(report, path, _plot)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summarize", nargs="+", type=Path, metavar="REPORT",
                        help="only recompute saved reports' summaries and figures from their runs")  # fmt: skip
    parser.add_argument("--compare", nargs=2, metavar="REPORT:METHOD",
                        help="only print the first row's accuracy minus the second's at every budget both "
                             "have, with the paired CI over problems (A.json:mcts_q B.json:best_of_n_q)")  # fmt: skip
    parser.add_argument("--model", help="CoLA checkpoint with a Q-network (cola-gym train --stage q)")
    parser.add_argument("--env", default="CoLA-Micro-Countdown-Medium-v0", help="held-out id")
    parser.add_argument("--problems", type=int, default=128)
    parser.add_argument("--first-problem", type=int, default=0,
                        help="tune on -Train- problems the Q-network was not fitted on (e.g. 8192)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64],
                        help="token budgets in units of the greedy answer's mean length")  # fmt: skip
    parser.add_argument("--mcts-budgets", type=int, nargs="*", default=[1, 2, 4, 8, 16],
                        help="the budgets MCTS is run at (each is a search per problem)")  # fmt: skip
    parser.add_argument("--simulations", type=int, default=4096, help="MCTS node cap (the token budget binds first)")
    parser.add_argument("--parallel-expansions", type=int, default=4)
    parser.add_argument("--stop-on-finished-answer", action=argparse.BooleanOptionalAction, default=False,
                        help="end a search at its first finished answer (else it spends its budget)")  # fmt: skip
    parser.add_argument("--max-tokens", type=int, default=64, help="token limit of an answer")
    parser.add_argument("--rollout-policy", choices=("sample", "greedy"), default="sample",
                        help="MCTS: how a leaf is rolled out (the release samples)")  # fmt: skip
    parser.add_argument("--rollout-temperature", type=float, default=1.0, help="MCTS: temperature of sampled rollouts")
    parser.add_argument("--sample-temperature", type=float, default=1.0,
                        help="best-of-N and majority vote: temperature of the policy samples")  # fmt: skip
    parser.add_argument("--merge-aliases", action=argparse.BooleanOptionalAction, default=True,
                        help="MCTS: one child per token (--no-merge-aliases: the release's search)")  # fmt: skip
    parser.add_argument("--reuse-greedy-rollouts", action=argparse.BooleanOptionalAction, default=True,
                        help="MCTS with greedy rollouts: a node on its parent's rollout takes the rest of "
                             "it (--no-reuse-greedy-rollouts: every node decodes its own rollout and pays for "
                             "it)")  # fmt: skip
    parser.add_argument("--leaf-q", choices=("last", "path_mean"), default="last",
                        help="how Q scores an answer, for best-of-N and MCTS-Q alike: Q of its last action or "
                             "the mean Q of all its actions")  # fmt: skip
    shape = parser.add_argument_group("MCTS tree shape (left out: the MCTSConfig defaults)")
    shape.add_argument("--exploration-constant", type=float, help="c of PUCT (0.7)")
    shape.add_argument("--root-width", type=int, help="children of the root (16)")
    shape.add_argument("--node-width", type=int, help="children of every other node (2)")
    shape.add_argument("--macro-td-threshold", type=float,
                       help="Q change under which a new node extends greedily as a macro step (0.01; 0 turns "
                            "macro steps off)")  # fmt: skip
    parser.add_argument("--n-envs", type=int, default=32, help="problems decoded together")
    parser.add_argument("--rl-agents", nargs="*", default=[], metavar="AGENT_ZIP",
                        help="RL-trained agents (a suite's checkpoints/<run>/agent.zip), one per seed")  # fmt: skip
    parser.add_argument("--rl-algorithm", default="ppo", choices=algorithm_names(), help="the agents' algorithm")
    parser.add_argument("--rl-budgets", type=int, nargs="*", default=[1, 2, 4, 8, 16],
                        help="budgets of the RL agent's sampling methods (draws 2x the largest)")  # fmt: skip
    parser.add_argument("--rl-search", action="store_true",
                        help="also MCTS-Q from each RL agent's policy (prior, rollouts) at --mcts-budgets")  # fmt: skip
    parser.add_argument("--out", default="benchmarks/results/search-scaling.json")
    args = parser.parse_args(argv)
    if args.summarize:
        missing = [str(path) for path in args.summarize if not path.is_file()]
        if missing:
            parser.error(f"no report at {', '.join(missing)}")
        for path in args.summarize:
            resummarize(path)
        return
    if args.compare:
        try:
            differences = compare(*args.compare)
        except ValueError as err:
            parser.error(str(err))
        if not differences:
            parser.error("the two rows share no budget")
        for row in differences:
            low, high = (100 * x for x in row["ci"])
            print(f"{row['budget']}x: {100 * row['difference']:+.1f} points [{low:+.1f}, {high:+.1f}]")
        return
    if args.model is None:
        parser.error("--model is required (or --summarize REPORT ...)")
    if args.rl_search and not args.rl_agents:
        parser.error("--rl-search searches from the RL agents' policies: give them with --rl-agents")
    try:
        MCTSConfig(**tree_shape(args))
    except ValueError as err:
        parser.error(f"MCTS tree shape: {err}")
    if shared_model(args.model).q_network is None:
        parser.error(f"{args.model} has no Q-network: train one with cola-gym train --stage q")
    missing = [path for path in args.rl_agents if not Path(path).is_file()]
    if missing:
        parser.error(f"no RL agent at {', '.join(missing)} (a suite writes checkpoints/<run>/agent.zip)")
    rl_agents = [algorithm_class(args.rl_algorithm).load(path) for path in args.rl_agents]

    settings = {k: v for k, v in vars(args).items() if k not in ("out",)}
    try:
        per_seed = finished_runs(Path(args.out), settings)
    except ValueError as err:
        parser.error(str(err))
    if per_seed:
        print(f"{args.out}: seeds {', '.join(str(run['seed']) for run in per_seed)} done; resuming", flush=True)
    sampling = MCTSConfig(leaf_value="q_network", leaf_q=args.leaf_q, rollout_max_tokens=args.max_tokens,
                          rollout_temperature=args.sample_temperature)  # fmt: skip
    for seed in args.seeds[len(per_seed) :]:
        greedy = evaluate(PriorAgent(seed=seed), args.env, problem_indices(args), n_envs=args.n_envs,
                          deterministic=True, model=args.model, max_episode_steps=args.max_tokens)  # fmt: skip
        unit = float(greedy.summary()["mean_tokens"])
        pool = sample_pool(args, seed, max(args.budgets), replace(sampling, seed=seed))
        row: dict[str, Any] = {"seed": seed, "greedy_tokens": unit, "greedy": [bool(s) for s in greedy.successes],
                               "q_auc_within_problem": within_problem_auc(pool), "budgets": {}}  # fmt: skip
        for budget in args.budgets:
            verdicts = [choose(samples, budget * unit) for samples in pool]
            point: dict[str, Any] = {
                "tokens_per_problem": statistics.mean(v["tokens"] for v in verdicts),
                "samples_per_problem": statistics.mean(v["samples"] for v in verdicts),
                **{method: [v[method] > 0.5 for v in verdicts] for method in SAMPLING},
            }
            leaf_values: tuple[tuple[LeafValue, str], ...] = (("q_network", "mcts_q"), ("oracle", "mcts_oracle"))
            for leaf_value, name in leaf_values:
                if budget in args.mcts_budgets:
                    point[name] = mcts_point(args, seed, max(1, round(budget * unit)), leaf_value)
                    print(f"seed {seed} {budget}x {name}: {point[name]['accuracy']:.3f}", flush=True)
            row["budgets"][str(budget)] = point
            print(f"seed {seed} {budget}x: " + ", ".join(f"{m} {np.mean(point[m]):.3f}" for m in SAMPLING), flush=True)
        if rl_agents:
            which = len(per_seed) % len(rl_agents)
            rl_pool = agent_pool(args, seed, 2 * max(args.rl_budgets), rl_agents[which])
            row["rl_agent"] = args.rl_agents[which]
            row["rl_greedy"] = [s[0]["reward"] > 0.5 for s in rl_pool]
            row["rl_greedy_tokens"] = statistics.mean(s[0]["tokens"] for s in rl_pool)
            row["rl_q_auc_within_problem"] = within_problem_auc(rl_pool)
            for budget in args.rl_budgets:
                verdicts = [choose(samples, budget * unit) for samples in rl_pool]
                row["budgets"].setdefault(str(budget), {}).update({
                    "rl_tokens_per_problem": statistics.mean(v["tokens"] for v in verdicts),
                    **{f"rl_{method}": [v[method] > 0.5 for v in verdicts] for method in SAMPLING},
                })  # fmt: skip
            print(f"seed {seed} RL agent greedy {np.mean(row['rl_greedy']):.3f}", flush=True)
            for budget in args.mcts_budgets if args.rl_search else []:
                point = mcts_point(args, seed, max(1, round(budget * unit)), "q_network", rl_agents[which])
                row["budgets"].setdefault(str(budget), {})["rl_mcts_q"] = point
                print(f"seed {seed} {budget}x rl_mcts_q: {point['accuracy']:.3f}", flush=True)
        per_seed.append(row)
        write_report({"env": args.env, "model": args.model, "problems": args.problems, "seeds": args.seeds,
                      "settings": settings, "summary": summarize(per_seed, report_budgets(settings)),
                      "runs": per_seed}, args.out, _plot)  # fmt: skip


def finished_runs(out: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-seed runs a stopped run of the same settings left in ``out`` (a report is written
    after every seed), in seed order; none without ``out``.

    Raises:
        ValueError: ``out`` is not such a report, or one of other settings or seeds.
    """
    if not out.is_file():
        return []
    try:
        report = json.loads(out.read_text())
        saved, runs = report["settings"], report["runs"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{out} exists and is not a search-scaling report ({err}); pass another --out") from err
    differ = sorted(key for key in {*saved, *settings} - {"seeds", "summarize"} if saved.get(key) != settings.get(key))
    seeds = [run["seed"] for run in runs]
    if differ or seeds != settings["seeds"][: len(seeds)]:
        why = f"other settings ({', '.join(differ)})" if differ else f"seeds {seeds}"
        raise ValueError(f"{out} holds a report of {why}; pass another --out or remove it to start over")
    return list(runs)


def summarize(per_seed: list[dict[str, Any]], budgets: list[int]) -> dict[str, list[dict[str, Any]]]:
    """Per method, per budget: accuracy over problems x seeds with its 95 % bootstrap CI, tokens, and
    (``paired``) its difference from each of :data:`PAIRED_BASELINES` at that budget, problem by problem."""
    summary: dict[str, list[dict[str, Any]]] = {}
    greedy = np.array([run["greedy"] for run in per_seed], dtype=float)
    unit = statistics.mean(run["greedy_tokens"] for run in per_seed)
    within = statistics.mean(r["q_auc_within_problem"]["mean"] for r in per_seed)
    summary["greedy"] = [{"budget": 1, "tokens": unit, "accuracy": float(greedy.mean()), "ci": bootstrap_ci(greedy),
                          "q_auc_within_problem": within}]  # fmt: skip
    if all("rl_greedy" in run for run in per_seed):
        rl_greedy = np.array([run["rl_greedy"] for run in per_seed], dtype=float)
        summary["rl_greedy"] = [{"budget": 1, "accuracy": float(rl_greedy.mean()), "ci": bootstrap_ci(rl_greedy),
                                 "tokens": statistics.mean(run["rl_greedy_tokens"] for run in per_seed),
                                 "q_auc_within_problem": statistics.mean(
                                     run["rl_q_auc_within_problem"]["mean"] for run in per_seed)}]  # fmt: skip
    for budget in budgets:
        points = [run["budgets"].get(str(budget), {}) for run in per_seed]
        answers = budget_answers(per_seed, budget)
        for prefix, tokens_key in (("", "tokens_per_problem"), ("rl_", "rl_tokens_per_problem")):
            if prefix + SAMPLING[0] not in answers:
                continue
            tokens = statistics.mean(p[tokens_key] for p in points)
            for method in SAMPLING:
                scores = answers[prefix + method]
                summary.setdefault(prefix + method, []).append(
                    {"budget": budget, "accuracy": float(scores.mean()), "ci": bootstrap_ci(scores), "tokens": tokens}
                )
        for method in SEARCHES:
            if method in answers:
                scores = answers[method]
                summary.setdefault(method, []).append({
                    "budget": budget, "accuracy": float(scores.mean()), "ci": bootstrap_ci(scores),
                    "tokens": statistics.mean(p[method]["tokens_per_problem"] for p in points),
                    "from_finished_node": statistics.mean(p[method]["from_finished_node"] for p in points),
                    "nodes_per_search": statistics.mean(p[method]["nodes_per_search"] for p in points),
                    "nodes_per_s": statistics.mean(p[method]["nodes_per_s"] for p in points),
                })  # fmt: skip
        for method, scores in answers.items():
            row = summary[method][-1]
            paired = {base: paired_difference(scores, answers[base]) for base in PAIRED_BASELINES
                      if base in answers and base != method}  # fmt: skip
            if paired:
                row["paired"] = paired
    return summary


def budget_answers(per_seed: list[dict[str, Any]], budget: int) -> dict[str, np.ndarray]:
    """Every method's answers at ``budget`` that all seeds have: right or not, ``[seeds, problems]``
    (the sampling methods', also the RL agent's, where their tokens were counted; the searches')."""
    points = [run["budgets"].get(str(budget), {}) for run in per_seed]
    answers = {}
    for prefix, tokens_key in (("", "tokens_per_problem"), ("rl_", "rl_tokens_per_problem")):
        if all(tokens_key in p for p in points):
            for method in SAMPLING:
                answers[prefix + method] = np.array([p[prefix + method] for p in points], dtype=float)
    for method in SEARCHES:
        if all(method in p for p in points):
            answers[method] = np.array([p[method]["successes"] for p in points], dtype=float)
    return answers


def compare(first: str, second: str) -> list[dict[str, Any]]:
    """``REPORT:METHOD`` against ``REPORT:METHOD`` at every budget both have, problem by problem
    (``--compare``): two reports of the same env and problems, e.g. a search run on one seed
    against the sampling rows of a three-seed run."""
    rows = []
    for spec in (first, second):
        path, _, method = spec.rpartition(":")
        if not path or not Path(path).is_file():
            raise ValueError(f"{spec!r}: expected REPORT:METHOD with an existing report")
        report = json.loads(Path(path).read_text())
        budgets = sorted({int(b) for run in report["runs"] for b in run["budgets"]})
        answers = {b: found[method] for b in budgets if method in (found := budget_answers(report["runs"], b))}
        if not answers:
            raise ValueError(f"{path} has no {method!r} rows")
        rows.append(((report["env"], report["problems"], report["settings"].get("first_problem", 0)), answers))
    (problems_a, a), (problems_b, b) = rows
    if problems_a != problems_b:
        raise ValueError("the reports pose different problems: compare runs of the same env and problems")
    return [{"budget": budget, **paired_difference(a[budget], b[budget])} for budget in sorted(a.keys() & b.keys())]


def _plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles = {"greedy": "k*", "best_of_n_q": "o-", "majority_vote": "s-", "best_of_n_oracle": "o:",
              "greedy_then_best_of_n_q": "^-", "mcts_q": "D-", "mcts_oracle": "D:", "rl_greedy": "r*",
              "rl_best_of_n_q": "o--", "rl_majority_vote": "s--", "rl_mcts_q": "D--"}  # fmt: skip
    for method, points in report["summary"].items():
        if method not in styles:  # the RL agent's pass@N and greedy-first lines would crowd the figure
            continue
        tokens = [p["tokens"] for p in points]
        accuracy = [100 * p["accuracy"] for p in points]
        low = [100 * (p["accuracy"] - p["ci"][0]) for p in points]
        high = [100 * (p["ci"][1] - p["accuracy"]) for p in points]
        ax.errorbar(tokens, accuracy, yerr=[low, high], fmt=styles.get(method, "o-"), capsize=2, label=method,
                    markersize=10 if method.endswith("greedy") else 5)  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("decoder tokens per problem (log scale)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(f"{report['env']}: {report['problems']} problems x {len(report['seeds'])} seeds, 95 % CIs", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
