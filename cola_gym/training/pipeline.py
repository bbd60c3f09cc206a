"""One call per stage: load the model and data, train, and write the final model with its card.

:func:`train_stage` is what ``cola-gym train`` runs; under ``torchrun`` every process
calls it and ``accelerate`` makes them one data-parallel job.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cola_gym.model import CoLAConfig, CoLAModel, DecoderSettings
from cola_gym.model.checkpoint import CONFIG_FILE
from cola_gym.training.config import TrainConfig
from cola_gym.training.data import TextSource, load_examples, merge_chat_turns
from cola_gym.training.q_records import load_episodes
from cola_gym.training.stages import STAGE_OBJECTIVES
from cola_gym.training.trainer import CoLATrainer


def train_stage(
    config: TrainConfig,
    sources: Sequence[TextSource],
    out: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    cola_config: CoLAConfig | None = None,
    eval_sources: Sequence[TextSource] = (),
    data_dir: str | os.PathLike[str] | None = None,
    settings: DecoderSettings | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    command: str | None = None,
    show_progress: bool = True,
    episodes: str | os.PathLike[str] | None = None,
    eval_episodes: str | os.PathLike[str] | None = None,
    q_network_num_layers: int = 2,
) -> dict[str, float]:
    """Trains one stage into ``out`` (resuming if ``out`` holds the same run).

    Args:
        config: the stage configuration.
        sources: training corpora.
        out: run directory; the trained model ends up in ``out/final``.
        model: where to start: a CoLA checkpoint (e.g. the previous stage's ``final``), a
            plain decoder (fresh heads from ``cola_config``), or ``None`` for the default.
        cola_config: head shapes for fresh heads (ignored for a CoLA checkpoint).
        eval_sources: held-out corpora evaluated during and after training.
        data_dir: folder of the math data sets (else ``$COLA_DATA_DIR``).
        settings: decoder placement; the device defaults to the process's accelerator device.
        cache_root: hidden-state cache folder (default: beside ``out``).
        command: the command line, for the model card.
        show_progress: progress bars on the main process.
        episodes: stage q: the logged episodes (``cola-gym collect-episodes``) to learn from.
        eval_episodes: stage q: held-out logged episodes; the Q-network's ranking of them by
            their reward is measured during and after training
            (:func:`~cola_gym.training.objectives.q_ranking_metrics`).
        q_network_num_layers: stage q: blocks of a new Q-network (when the model has none).

    Returns:
        The held-out metrics at the end (empty without ``eval_sources``).
    """
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    if settings is None:
        settings = DecoderSettings(device=str(accelerator.device))
    if model is not None and (Path(model) / CONFIG_FILE).is_file():
        cola = CoLAModel.from_pretrained(model, settings=settings)
    else:
        cola = CoLAModel.from_decoder(model, cola_config or CoLAConfig(init_seed=config.seed), settings)
    if STAGE_OBJECTIVES[config.stage].data == "episodes":
        if episodes is None:
            raise ValueError(
                f"stage {config.stage} learns from logged episodes: pass episodes=<file from cola-gym collect-episodes>"
            )
        examples = load_episodes(episodes)
        if cola.q_network is None:
            cola.add_q_network(q_network_num_layers, seed=config.seed)
        data = [f"episodes {episodes}"]
        eval_examples = load_episodes(eval_episodes) if eval_episodes is not None else []
    else:
        examples = load_examples(sources, cola.tokenizer, config.seq_len, data_dir)
        eval_examples = load_examples(eval_sources, cola.tokenizer, config.seq_len, data_dir) if eval_sources else []
        if config.whole_chats:
            examples, eval_examples = merge_chat_turns(examples), merge_chat_turns(eval_examples)
        data = [s.spec + (f" (first {s.max_examples})" if s.max_examples else "") for s in sources]
    description: dict[str, Any] = {
        "model": str(model) if model is not None else None,
        "data": data,
        "eval_data": [s.spec for s in eval_sources] + ([f"episodes {eval_episodes}"] if eval_episodes else []),
        "command": command,
        "previous": _previous_stages(model),
    }
    trainer = CoLATrainer(
        cola,
        config,
        examples,
        out,
        eval_examples=eval_examples,
        cache_root=cache_root,
        accelerator=accelerator,
        description=description,
        show_progress=show_progress,
    )
    return trainer.train()


def _previous_stages(model: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """The training records of the model a stage starts from (kept in the new model card)."""
    if model is None:
        return []
    record = Path(model) / "training.json"
    return list(json.loads(record.read_text())) if record.is_file() else []
