"""``cola-gym episode``: one episode, printed: the task, the model's text, the answer and the reward."""

from __future__ import annotations

import argparse
import time
from typing import Any

from cola_agents.algorithms import algorithm_class, algorithm_names
from cola_agents.cli.options import add_data_dir_option, add_decoder_options, add_env_option
from cola_agents.config_args import add_config_arguments, config_values

SEARCH_AGENTS = ("mcts", "best-of-n")
AGENTS = ("policy", "greedy", "random", *SEARCH_AGENTS)
"""Agents that act without training; an algorithm's name plays a trained agent (``--checkpoint``)."""


def add_parser(commands: Any) -> None:
    """Adds ``episode`` to the subcommands."""
    from cola_agents.mcts.config import MCTSConfig

    episode = commands.add_parser("episode", help="run one episode and print text, answer and reward")
    add_env_option(episode, default="CoLA-Math500-v0")
    episode.add_argument("--model", help="CoLA checkpoint or decoder (path or Hub id); default: the embedded model")
    episode.add_argument(
        "--agent",
        choices=(*AGENTS, *algorithm_names()),
        default="policy",
        help="policy: sample the CoLA policy prior (top-k 40); greedy: its argmax; random: uniform; "
        "mcts: MCTS-Q tree search; best-of-n: the best of --samples policy samples; "
        f"{', '.join(algorithm_names())}: a trained agent of that algorithm (--checkpoint), acting greedily",
    )
    episode.add_argument(
        "--checkpoint", help="the trained agent's file (cola-gym benchmark run: checkpoints/*/agent.zip)"
    )
    episode.add_argument("--samples", type=int, default=16, help="best-of-n: samples")
    episode.add_argument(
        "--task-index", "--problem-index", type=int, help="task instance (problem) to run (default: drawn with --seed)"
    )
    episode.add_argument("--seed", type=int, default=0, help="seed of the episode and of the agent's sampling")
    episode.add_argument("--max-steps", type=int, help="token limit (default: the env's)")
    add_data_dir_option(episode)
    add_decoder_options(episode)
    search = episode.add_argument_group("search of mcts and best-of-n (MCTSConfig)")
    add_config_arguments(
        search,
        MCTSConfig,
        aliases={"--num-simulations": ("--simulations",), "--rollout-max-tokens": ("--rollout-tokens",)},
        skip=("seed",),
        notes={"leaf_value": "A model without a Q-network defaults to oracle."},
    )
    episode.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Plays one episode with the chosen agent and prints it."""
    import gymnasium as gym
    from tqdm import tqdm

    from cola_agents.agents import BoundAgent, merge_agent_env_kwargs

    started = time.perf_counter()
    agent = make_agent(args)
    env = gym.make(args.env, **merge_agent_env_kwargs(agent, _env_kwargs(args)))
    loaded = time.perf_counter()
    options = {} if args.task_index is None else {"task_index": args.task_index}
    obs, info = env.reset(seed=args.seed, options=options)
    if isinstance(agent, BoundAgent):
        agent.bind(env)
    deterministic = args.agent != "policy"
    total = env.spec.max_episode_steps if env.spec is not None else None
    reward, terminated, truncated = 0.0, False, False
    with tqdm(total=total, desc="decoding", unit="tok") as progress:
        while not (terminated or truncated):
            action, _ = agent.predict(obs, deterministic=deterministic)
            obs, step_reward, terminated, truncated, info = env.step(action)
            reward = float(step_reward)
            progress.update(1)
    timing = f"load {loaded - started:.1f} s, decode {time.perf_counter() - loaded:.1f} s"
    _print_episode(args.env, env.unwrapped, info, reward, terminated, timing)
    env.close()
    return 0


def make_agent(args: argparse.Namespace) -> Any:
    """The agent ``--agent`` names: a simple or search agent, or a trained algorithm's agent
    (its class from :data:`cola_agents.algorithms.ALGORITHMS`)."""
    from cola_agents.agents import PriorAgent, RandomAgent

    if args.agent in algorithm_names():
        if args.checkpoint is None:
            raise ValueError(f"--agent {args.agent} plays a trained agent: give its file with --checkpoint")
        return algorithm_class(args.agent).load(args.checkpoint)
    if args.checkpoint is not None:
        raise ValueError(f"--checkpoint is for a trained agent (--agent {' / '.join(algorithm_names())})")
    if args.agent == "random":
        return RandomAgent(seed=args.seed)
    if args.agent in SEARCH_AGENTS:
        return _search_agent(args)
    return PriorAgent(seed=args.seed)


def _search_agent(args: argparse.Namespace) -> Any:
    from cola_agents.mcts import BestOfNAgent, MCTSAgent, MCTSConfig
    from cola_gym.model import DecoderSettings, shared_model

    model = shared_model(_model_reference(args), DecoderSettings(**config_values(args, DecoderSettings)))
    values = config_values(args, MCTSConfig)
    values.setdefault("leaf_value", "q_network" if model.q_network is not None else "oracle")
    config = MCTSConfig(**{**values, "seed": args.seed})
    source = "the env reward (oracle)" if config.leaf_value == "oracle" else "the Q-network"
    print(f"{args.agent}: leaf values from {source}")
    return MCTSAgent(model, config) if args.agent == "mcts" else BestOfNAgent(model, args.samples, config)


def _model_reference(args: argparse.Namespace) -> str | None:
    """``--model``, else the model the env id's spec names (``None``: the default model)."""
    from cola_gym.registration import entry

    return args.model if args.model is not None else entry(args.env).model


def _env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The env arguments the options set (the agent adds those it needs itself)."""
    from cola_gym.model import DecoderSettings

    kwargs: dict[str, Any] = config_values(args, DecoderSettings)
    given = (("model", args.model), ("data_dir", args.data_dir), ("max_episode_steps", args.max_steps))
    kwargs.update((key, value) for key, value in given if value is not None)
    if args.agent in algorithm_names():
        kwargs["observation"] = "hidden+prior"  # what the runner and the zoo train on
    return kwargs


def _print_episode(env_id: str, base: Any, info: dict[str, Any], reward: float, terminated: bool, timing: str) -> None:
    """The task, the model's text, the task's info, the reward and how long it took."""
    print(f"\n=== {env_id} task {info['task_index']} ===")
    print(base.task.describe(base.episode.task_state))
    print("\n=== model output ===")
    print(info["text"])
    print("\n=== result ===")
    for key in base.task.info_keys:
        print(f"{key}: {info[key]}")
    print(f"success: {info['is_success']}")
    ended = "terminated" if terminated else "truncated (step limit)"
    print(f"reward: {reward:g}  ({ended} after {info['num_tokens']} tokens; {timing})")
