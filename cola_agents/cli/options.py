"""Options that several ``cola-gym`` subcommands share."""

from __future__ import annotations

import argparse

import cola_gym
from cola_agents.config_args import add_config_arguments


def add_env_option(parser: argparse.ArgumentParser, default: str | None = None, help_text: str | None = None) -> None:
    """``--env``: a registered cola-gym id (required when there is no ``default``)."""
    parser.add_argument("--env", default=default, required=default is None, choices=sorted(cola_gym.ENV_IDS),
                        metavar="ID", help=help_text or "a cola-gym id (cola_gym.ENV_IDS)")  # fmt: skip


def add_data_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``: where the data sets are."""
    parser.add_argument("--data-dir", help="folder with the data sets (default: $COLA_DATA_DIR, else the Hub)")


def add_decoder_options(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--quantization``, ``--dtype``: :class:`~cola_gym.model.DecoderSettings`' fields."""
    from cola_gym.model import DecoderSettings

    add_config_arguments(parser.add_argument_group("decoder placement (DecoderSettings)"), DecoderSettings)
