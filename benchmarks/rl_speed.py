"""Env tokens/s of RL on the real decoder: GRPO's ``learn`` against the vector env it runs on.

For one id (default: the default Countdown model on ``CoLA-Countdown-Easy-Train-v0``), in one run
and alternating in rounds:

- ``vector_env``: ``make_sb3_env(id, n_envs=N, observation="hidden+prior")`` stepped with
  uniformly random actions, resets included (what any RL algorithm pays at least);
- ``grpo``: ``GRPO("MlpPolicy", ...)`` learning one rollout of ``N / G`` groups of G (episodes
  run to their end; rollout, prefills and the update included);
- ``grpo_token``: the same on the id's token twin (``-Token-``: actions are vocabulary ids).

It prints env tokens/s (``num_timesteps`` over wall time; every row of every decoder call
counts, as SB3 counts) and the ratios the targets name: GRPO / vector env (>= 0.9) and token
GRPO / latent GRPO (>= 0.6). With ``--profile`` it also writes where GRPO's time goes.

    python benchmarks/rl_speed.py --rounds 2 --out rl_speed.json
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _report import pyplot, save_figure, write_report

import cola_gym  # noqa: F401 - registers the ids
from cola_agents.algorithms import GRPO
from cola_agents.sb3 import make_sb3_env
from cola_gym.registration import entry


def time_vector_env(env_id: str, n_envs: int, steps: int, env_kwargs: dict[str, Any]) -> float:
    """Env tokens/s of the vector env under random actions, ``steps`` steps of every row."""
    env = make_sb3_env(env_id, n_envs=n_envs, seed=0, observation="hidden+prior", **env_kwargs)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    env.reset()
    for _ in range(steps):
        env.step(rng.integers(0, env.action_space.n, size=n_envs))
    seconds = time.perf_counter() - started
    env.close()
    return n_envs * steps / seconds


def time_grpo(env_id: str, n_envs: int, group_size: int, env_kwargs: dict[str, Any], profile: Path | None) -> float:
    """Env tokens/s of one GRPO rollout and update (``N / G`` groups)."""
    env = make_sb3_env(env_id, n_envs=n_envs, seed=0, observation="hidden+prior", **env_kwargs)
    agent = GRPO("MlpPolicy", env, group_size=group_size, n_epochs=1, seed=0, device="cpu")
    profiler = cProfile.Profile() if profile is not None else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    agent.learn(total_timesteps=1)  # one rollout: every group runs to its end
    if profiler is not None:
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        profile.write_text(text.getvalue(), encoding="utf-8")
    seconds = time.perf_counter() - started
    env.close()
    return agent.num_timesteps / seconds


def plot(report: dict[str, Any], path: Path) -> None:
    """Bars of the median env tokens/s, every round's value as a dot."""
    plt = pyplot()
    names = list(report["median_tokens_per_s"])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(
        names, [report["median_tokens_per_s"][n] for n in names], color=["#888888", "#1f77b4", "#ff7f0e"][: len(names)]
    )
    for x, name in enumerate(names):
        values = report["tokens_per_s"][name]
        ax.scatter([x] * len(values), values, color="black", s=10, zorder=3)
    ax.set_ylabel("env tokens/s")
    ax.set_title(f"{report['env']}, N = {report['n_envs']}, G = {report['group_size']}", fontsize=9)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CoLA-Countdown-Easy-Train-v0", help="a latent-action id with a token twin")
    parser.add_argument("--model", help="CoLA checkpoint (default: the id's default model)")
    parser.add_argument("--n-envs", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-steps", type=int, help="token limit of an episode (default: the id's)")
    parser.add_argument("--vector-steps", type=int, default=64, help="steps of the random-action measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-token", action="store_true", help="leave out GRPO on the token twin")
    parser.add_argument("--profile", help="folder for cProfile summaries of GRPO (latent and token)")
    parser.add_argument("--out", default="rl_speed.json", help="JSON report (and a PNG beside it)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    twin = entry(args.env).token_twin
    if twin is None and not args.skip_token:
        raise SystemExit(f"{args.env} has no token twin: pick another id or pass --skip-token")
    env_kwargs: dict[str, Any] = {}
    if args.model:
        env_kwargs["model"] = args.model
    if args.max_steps:
        env_kwargs["max_episode_steps"] = args.max_steps
    profile_dir = Path(args.profile) if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[float]] = {"vector_env": [], "grpo": [], "grpo_token": []}
    for round_index in range(args.rounds):
        profile = profile_dir if round_index == 0 else None
        runs["vector_env"].append(time_vector_env(args.env, args.n_envs, args.vector_steps, env_kwargs))
        runs["grpo"].append(time_grpo(args.env, args.n_envs, args.group_size, env_kwargs,
                                      profile and profile / "grpo.txt"))  # fmt: skip
        if twin is not None and not args.skip_token:
            runs["grpo_token"].append(time_grpo(twin, args.n_envs, args.group_size, env_kwargs,
                                                profile and profile / "grpo_token.txt"))  # fmt: skip
        print(f"round {round_index}: " + "  ".join(f"{k} {v[-1]:.1f}" for k, v in runs.items() if v))
    medians = {key: statistics.median(values) for key, values in runs.items() if values}
    ratios = {"grpo/vector_env": medians["grpo"] / medians["vector_env"]}
    if "grpo_token" in medians:
        ratios["grpo_token/grpo"] = medians["grpo_token"] / medians["grpo"]
    report = {"env": args.env, "n_envs": args.n_envs, "group_size": args.group_size, "rounds": args.rounds,
              "tokens_per_s": runs, "median_tokens_per_s": medians, "ratios": ratios,
              "torch_threads": torch.get_num_threads()}  # fmt: skip
    write_report(report, args.out, plot)


if __name__ == "__main__":
    main()
