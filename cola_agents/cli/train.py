"""``cola-gym train``: one CoLA training stage; re-running the same command resumes it."""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Sequence
from typing import Any

from cola_agents.cli.options import add_decoder_options
from cola_agents.config_args import add_config_arguments, config_values

_TRAIN_ALIASES = {
    "--learning-rate": ("--lr",),
    "--min-learning-rate": ("--min-lr",),
    "--no-use-hidden-cache": ("--no-hidden-cache",),
}


def add_parser(commands: Any) -> None:
    """Adds ``train`` to the subcommands."""
    from cola_gym.model.config import CoLAConfig
    from cola_gym.training.config import TrainConfig

    train = commands.add_parser(
        "train",
        help="train one CoLA stage (1a, 1b, 2, or q: the Q-network)",
        description="Train one CoLA stage. Re-running the same command resumes it.",
    )
    train.add_argument(
        "--model",
        help="start from: a CoLA checkpoint (previous stage's final/), a decoder "
        "(path or Hub id; fresh heads), default: the embedded decoder",
    )
    train.add_argument(
        "--data",
        action="append",
        default=[],
        help="training source, repeatable: an env id or its short name (math:train, gsm8k:train), file.jsonl, file.txt",
    )
    train.add_argument("--episodes", help="stage q: logged episodes (cola-gym collect-episodes)")
    train.add_argument(
        "--eval-episodes",
        help="stage q: held-out logged episodes; reports how well Q ranks them "
        "by their reward (AUC at the first, middle and last step)",
    )
    train.add_argument("--q-layers", type=int, default=2, help="stage q: blocks of a new Q-network")
    train.add_argument("--eval-data", action="append", default=[], help="held-out source, repeatable (e.g. math:test)")
    train.add_argument("--max-examples", type=int, help="use the first N examples of each training source")
    train.add_argument("--eval-examples", type=int, default=64, help="first N examples of each held-out source")
    train.add_argument("--text-field", help="JSON-lines field with a whole document")
    train.add_argument("--prompt-field", help="JSON-lines field with the user turn or the chat so far (messages)")
    train.add_argument("--response-field", help="JSON-lines field with the assistant turn")
    train.add_argument("--data-dir", help="folder with the math data sets (default: $COLA_DATA_DIR)")
    train.add_argument("--out", required=True, help="run directory (checkpoints, TensorBoard, final/)")
    train.add_argument("--cache-dir", help="hidden-state cache folder (default: beside --out)")
    add_decoder_options(train)
    heads = train.add_argument_group("fresh heads, for a decoder without them (CoLAConfig; init_seed is --seed)")
    add_config_arguments(heads, CoLAConfig, skip=("init_seed", "q_network_num_layers"))
    add_config_arguments(train.add_argument_group("the stage (TrainConfig)"), TrainConfig, aliases=_TRAIN_ALIASES)
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Trains the stage and prints its final metrics."""
    from cola_gym.model import CoLAConfig, DecoderSettings
    from cola_gym.training import TrainConfig
    from cola_gym.training.pipeline import train_stage
    from cola_gym.training.stages import STAGE_OBJECTIVES

    config = TrainConfig(**config_values(args, TrainConfig))
    on_episodes = STAGE_OBJECTIVES[config.stage].data == "episodes"
    if on_episodes != (args.episodes is not None) or (not on_episodes and not args.data):
        raise ValueError("stage q needs --episodes (and no --data); the other stages need --data")
    if args.eval_episodes is not None and not on_episodes:
        raise ValueError("--eval-episodes is for stage q; the other stages take --eval-data")
    placement = DecoderSettings(**config_values(args, DecoderSettings))
    metrics = train_stage(
        config,
        _sources(args.data, args, args.max_examples),
        args.out,
        model=args.model,
        cola_config=CoLAConfig(**config_values(args, CoLAConfig), init_seed=config.seed),
        eval_sources=_sources(args.eval_data, args, args.eval_examples),
        data_dir=args.data_dir,
        settings=None if placement == DecoderSettings() else placement,  # None: each process's own device
        cache_root=args.cache_dir,
        command="cola-gym " + shlex.join(args.argv),
        episodes=args.episodes,
        eval_episodes=args.eval_episodes,
        q_network_num_layers=args.q_layers,
    )
    if metrics:
        print(json.dumps(metrics, indent=2))
    print(f"trained model: {args.out}/final")
    return 0


def _sources(specs: Sequence[str], args: argparse.Namespace, limit: int | None) -> list[Any]:
    from cola_gym.training import TextSource

    fields = {"text_field": args.text_field, "prompt_field": args.prompt_field, "response_field": args.response_field}
    return [TextSource(spec, max_examples=limit, **(fields if spec.endswith(".jsonl") else {})) for spec in specs]
