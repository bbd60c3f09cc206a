"""The model card written next to a trained model (``final/README.md`` + ``training.json``)."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cola_gym.model import CoLAModel
from cola_gym.model.decoders import EMBEDDED_DECODER
from cola_gym.training.config import TrainConfig
from cola_gym.training.data import TokenizedExample, examples_fingerprint

_STAGE_NAMES = {
    "lm": "stage lm: the decoder as a plain language model, trained from scratch",
    "1a": "stage 1a: latent action control (IDM + codebook + world model, decoder frozen)",
    "1b": "stage 1b: behaviour cloning of the latent policy on IDM actions",
    "2": "stage 2: fine-tuning under action guidance",
    "q": "stage q: the Q-network for tree search (on logged episodes: Double DQN or Monte Carlo targets)",
}


def write_model_card(
    directory: Path,
    config: TrainConfig,
    model: CoLAModel,
    examples: Sequence[TokenizedExample],
    metrics: dict[str, float],
    description: dict[str, Any],
) -> None:
    """Writes ``README.md`` (for people) and ``training.json`` (for tools) into ``directory``.

    Earlier stages' records (``description["previous"]``) are kept, so the card of the last
    stage tells the whole pipeline.
    """
    tokens = int(sum(len(e.ids) for e in examples))
    record = {
        "stage": config.stage,
        "config": config.to_dict(),
        "cola_config": model.config.to_dict(),
        "decoder": str(model.decoder_name_or_path or EMBEDDED_DECODER),
        "data": {
            "sources": description.get("data", []),
            "examples": len(examples),
            "tokens": tokens,
            "fingerprint": examples_fingerprint(examples),
        },
        "command": description.get("command"),
        "seed": config.seed,
        "training_seconds": description.get("training_seconds"),
        "metrics": metrics,
        "hardware": f"{platform.machine()} {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", CPU"),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    history = [*description.get("previous", []), record]
    (directory / "training.json").write_text(json.dumps(history, indent=2))
    lines = [
        "# CoLA model card",
        "",
        f"Latent-action heads (K = {model.num_actions}) on the decoder `{record['decoder']}`, trained with cola-gym.",
        "",
    ]
    for entry in history:
        cfg = entry["config"]
        lines += [
            f"## {_STAGE_NAMES[entry['stage']]}",
            "",
            f"- command: `{entry['command']}`" if entry.get("command") else "- command: (library call)",
            f"- data: {', '.join(str(s) for s in entry['data']['sources']) or 'given examples'}; "
            f"{entry['data']['examples']} examples, {entry['data']['tokens']} tokens "
            f"(fingerprint {entry['data']['fingerprint']})",
            f"- steps {cfg['steps']}, batch {cfg['batch_size']}, sequence length {cfg['seq_len']}, "
            f"learning rate {cfg['learning_rate'] or 'stage default'} ({cfg['schedule']}), seed {entry['seed']}",
            f"- hardware: {entry['hardware']}; {entry.get('training_seconds') or '?'} s of training; "
            f"finished {entry['finished']}",
        ]
        if entry["metrics"]:
            lines += ["", "| held-out metric | value |", "| --- | --- |"]
            lines += [f"| {k} | {v:.4g} |" for k, v in sorted(entry["metrics"].items())]
        lines.append("")
    (directory / "README.md").write_text("\n".join(lines))
