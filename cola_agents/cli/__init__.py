"""The ``cola-gym`` command, one module per subcommand.

- ``cola-gym episode``: run one episode and print the text, the answer and the reward;
- ``cola-gym train``: train one CoLA stage (1a, 1b, 2, or q: the Q-network); ``torchrun`` makes
  it data-parallel;
- ``cola-gym collect-episodes``: log best-of-N policy episodes (actions, rewards) for Q-learning;
- ``cola-gym export``: copy a trained model, its heads at lower precision, with its card;
- ``cola-gym demos``: write a task's demonstrations (prompt messages, response) as JSON lines;
- ``cola-gym benchmark run`` / ``report``: the RL benchmark protocol (suites of algorithm x
  task x seed runs at equal env-token budgets, resumable, local or Ray) and its rliable report;
- ``cola-gym init-decoder``: a small Llama decoder from scratch (tokenizer trained on a task's
  text, random weights), the micro tier's starting point for ``cola-gym train --stage lm``.

Options that set a config dataclass's fields are made from the dataclass
(:func:`cola_agents.config_args.add_config_arguments`): its docs are their help, its defaults theirs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from cola_agents.cli import benchmark, collect_episodes, demos, episode, export, init_decoder, train
from cola_gym.errors import CoLAError

SUBCOMMANDS = (episode, train, collect_episodes, export, demos, benchmark, init_decoder)
"""The modules whose ``add_parser`` adds a subcommand, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The ``cola-gym`` argument parser."""
    parser = argparse.ArgumentParser(prog="cola-gym", description=__doc__.split("\n\n")[1].replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cola-gym`` command."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "transformers", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return int(args.run(args))
    except (CoLAError, ValueError, FileNotFoundError) as error:  # bad input: the message says what to fix
        print(f"cola-gym {args.command}: error: {error}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main"]
