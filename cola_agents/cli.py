"""Command line: ``cola-gym episode`` runs one episode and prints the text, answer and reward."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
from tqdm import tqdm

import cola_gym
from cola_agents.agents import PolicyPriorAgent, RandomAgent


def _episode(args: argparse.Namespace) -> int:
    kwargs: dict[str, Any] = {
        "track_policy": args.agent != "random",
        "device": args.device,
        "quantization": args.quantization,
    }
    if args.model is not None:
        kwargs["model"] = args.model
    if args.data_dir is not None:
        kwargs["data_dir"] = args.data_dir
    if args.max_steps is not None:
        kwargs["max_episode_steps"] = args.max_steps
    started = time.perf_counter()
    env = gym.make(args.env, **kwargs)
    loaded = time.perf_counter()
    agent = (
        RandomAgent(args.seed)
        if args.agent == "random"
        else PolicyPriorAgent(greedy=args.agent == "greedy", seed=args.seed)
    )
    options = {} if args.problem_index is None else {"problem_index": args.problem_index}
    _, info = env.reset(seed=args.seed, options=options)
    base = env.unwrapped
    total = env.spec.max_episode_steps if env.spec is not None else None
    reward, terminated, truncated = 0.0, False, False
    with tqdm(total=total, desc="decoding", unit="tok") as progress:
        while not (terminated or truncated):
            _, step_reward, terminated, truncated, info = env.step(agent.act(env))
            reward = float(step_reward)
            progress.update(1)
    problem = getattr(base, "problem", None)
    print(f"\n=== {args.env} problem {info.get('problem_index')} ===")
    if problem is not None:
        print(problem.problem)
    print("\n=== model output ===")
    print(info["text"])
    print("\n=== result ===")
    print(f"answer: {info.get('answer') or '(none)'}")
    if problem is not None:
        print(f"reference: {problem.answer}")
    ended = "terminated" if terminated else "truncated (step limit)"
    print(
        f"reward: {reward:g}  ({ended} after {info['num_tokens']} tokens; "
        f"load {loaded - started:.1f} s, decode {time.perf_counter() - loaded:.1f} s)"
    )
    env.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``cola-gym`` argument parser."""
    parser = argparse.ArgumentParser(prog="cola-gym", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    episode = commands.add_parser("episode", help="run one episode and print text, answer and reward")
    episode.add_argument("--env", default="CoLA-Math500-v0", choices=sorted(cola_gym.ENV_IDS))
    episode.add_argument("--model", help="CoLA checkpoint or decoder (path or Hub id); default: the embedded model")
    episode.add_argument(
        "--agent",
        choices=("policy", "greedy", "random"),
        default="policy",
        help="policy: sample the CoLA policy prior (top-k 40); greedy: its argmax; random: uniform",
    )
    episode.add_argument("--problem-index", type=int, help="problem to solve (default: drawn with --seed)")
    episode.add_argument("--seed", type=int, default=0)
    episode.add_argument("--max-steps", type=int, help="token limit (default: the env's)")
    episode.add_argument("--data-dir", help="folder with the data sets (default: $COLA_DATA_DIR, else the Hub)")
    episode.add_argument("--device", default="auto")
    episode.add_argument("--quantization", default="auto", choices=("auto", "none", "4bit", "8bit"))
    episode.set_defaults(run=_episode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cola-gym`` command."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "transformers", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
