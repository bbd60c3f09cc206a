"""``cola-gym export``: a trained model copied with its heads at lower precision, and its card."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> None:
    """Adds ``export`` to the subcommands."""
    export = commands.add_parser("export", help="copy a trained model with its heads at lower precision")
    export.add_argument("--model", required=True, help="a CoLA checkpoint directory")
    export.add_argument("--out", required=True)
    export.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    export.add_argument("--store-decoder", action="store_true",
                        help="also write the decoder (a self-contained export, e.g. a micro decoder)")  # fmt: skip
    export.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Writes the export and says what it holds."""
    import torch

    from cola_gym.model import CoLAModel, DecoderSettings

    model = CoLAModel.from_pretrained(args.model, settings=DecoderSettings(device="cpu"))
    model.save_pretrained(args.out, store_decoder=args.store_decoder, dtype=getattr(torch, args.dtype))
    for card in ("README.md", "training.json"):
        if (Path(args.model) / card).is_file():
            shutil.copy(Path(args.model) / card, Path(args.out) / card)
    stored = "heads and decoder" if args.store_decoder else "heads"
    print(f"exported {args.model} -> {args.out} ({stored} in {args.dtype})")
    return 0
