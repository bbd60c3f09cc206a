"""``cola-gym collect-episodes``: policy samples, or with ``--search`` every distinct answer of
MCTS trees, logged with their actions and rewards for Q-learning."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cola_agents.cli.options import add_data_dir_option, add_decoder_options, add_env_option
from cola_agents.config_args import add_config_arguments, config_values

_SAMPLING_FIELDS = ("rollout_max_tokens", "rollout_policy", "rollout_top_k", "rollout_temperature", "seed")
"""The :class:`~cola_agents.mcts.MCTSConfig` fields an episode's sampling reads."""
_SEARCH_FIELDS = ("token_budget", "num_simulations", "leaf_value", "leaf_q", "merge_aliases", "root_width",
                  "node_width", "exploration_constant", "parallel_expansions", "macro_max_tokens",
                  "macro_td_threshold", "reuse_greedy_rollouts", "stop_on_finished_answer")  # fmt: skip
"""The fields a ``--search`` run reads too."""
_SEARCH_DEFAULTS = {"leaf_value": "oracle"}
"""The command's own defaults of those fields (training data is scored by the env's reward)."""


def add_parser(commands: Any) -> None:
    """Adds ``collect-episodes`` to the subcommands."""
    from cola_agents.mcts.config import MCTSConfig

    collect = commands.add_parser("collect-episodes", help="log best-of-N policy episodes for Q-learning")
    add_env_option(collect, default="CoLA-GSM8K-Train-v0")
    collect.add_argument("--model", help="CoLA checkpoint (default: the default model)")
    collect.add_argument("--problems", type=int, default=64, help="how many problems, from --first-problem on")
    collect.add_argument("--first-problem", type=int, default=0)
    collect.add_argument("--samples", type=int, default=4, help="episodes per problem (with --search: searches)")
    collect.add_argument("--search", action="store_true",
                         help="log every distinct answer of MCTS trees (single-turn tasks)")  # fmt: skip
    collect.add_argument("--batch-problems", type=int, default=8, help="problems decoded together")
    add_data_dir_option(collect)
    add_decoder_options(collect)
    collect.add_argument("--out", required=True, help="JSON-lines file, appended to (problems it holds are "
                         "skipped: a stopped run resumes)")  # fmt: skip
    sampling = collect.add_argument_group("sampling (MCTSConfig)")
    add_config_arguments(sampling, MCTSConfig, aliases={"--rollout-max-tokens": ("--max-tokens",)},
                         fields=_SAMPLING_FIELDS, defaults={"rollout_max_tokens": 512})  # fmt: skip
    searching = collect.add_argument_group("search, with --search (MCTSConfig)")
    add_config_arguments(searching, MCTSConfig, fields=_SEARCH_FIELDS, defaults=_SEARCH_DEFAULTS,
                         notes={"leaf_value": "Rewards are the env's either way."})  # fmt: skip
    collect.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Collects the episodes and prints their summary."""
    from cola_agents.collect import collect_episodes, collect_search_episodes
    from cola_agents.mcts import MCTSConfig
    from cola_gym.model import DecoderSettings

    env_kwargs: dict[str, Any] = config_values(args, DecoderSettings)
    if args.model is not None:
        env_kwargs["model"] = args.model
    if args.data_dir:
        env_kwargs["data_dir"] = args.data_dir
    problems = range(args.first_problem, args.first_problem + args.problems)
    values = config_values(args, MCTSConfig)
    if args.search:
        if values.get("token_budget") is None:
            raise ValueError("--search needs --token-budget (decoder tokens per search)")
        config = MCTSConfig(**values)
        summary = collect_search_episodes(args.env, problems, args.out, config, searches=args.samples,
                                          batch_problems=args.batch_problems, **env_kwargs)  # fmt: skip
    else:
        searched = sorted(name for name in set(values) & set(_SEARCH_FIELDS)
                          if name not in _SEARCH_DEFAULTS or values[name] != _SEARCH_DEFAULTS[name])  # fmt: skip
        if searched:
            raise ValueError(f"{', '.join(searched)} only apply with --search")
        config = MCTSConfig(**values)
        summary = collect_episodes(args.env, problems, args.out, samples=args.samples,
                                   batch_problems=args.batch_problems, config=config, **env_kwargs)  # fmt: skip
    print(json.dumps(summary, indent=2))
    return 0
