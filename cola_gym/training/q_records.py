"""Logged CoLA episodes (JSON lines) for offline Q-learning.

One line per episode::

    {"problem_index": 12, "ids": [...], "response_start": 97, "actions": [...],
     "positions": [...], "reward": 1.0, "finished": true}

``ids`` are every token the decoder consumed (prompt, then the episode), ``positions[i]``
is the index in ``ids`` of the state where action ``actions[i]`` was taken (its last
consumed token), and ``reward`` is the episode's terminal reward.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cola_gym.errors import DataFormatError, DataNotFoundError
from cola_gym.text.jsonl import MalformedLine, jsonl_lines
from cola_gym.training.data import TokenizedExample, Transitions


def episode_record(
    problem_index: int, prompt: list[int], rollout_tokens: list[int], actions: list[int], positions: list[int],
    reward: float, finished: bool,
) -> dict[str, Any]:  # fmt: skip
    """The JSON record of an episode that started after ``prompt`` (positions relative to the prompt's end)."""
    start = len(prompt)
    return {"problem_index": problem_index, "ids": list(prompt) + list(rollout_tokens), "response_start": start,
            "actions": list(actions), "positions": [start - 1 + p for p in positions], "reward": float(reward),
            "finished": bool(finished)}  # fmt: skip


def write_episodes(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> int:
    """Appends records to a JSON-lines file; returns how many were written."""
    count = 0
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
            count += 1
    return count


def load_episodes(path: str | os.PathLike[str], max_episodes: int | None = None) -> list[TokenizedExample]:
    """Reads logged episodes as examples carrying their :class:`Transitions`."""
    file = Path(path)
    if not file.is_file():
        raise DataNotFoundError(f"episode file {file} does not exist; make one with `cola-gym collect-episodes`")
    examples = []
    for where, row in jsonl_lines(file):
        try:
            if isinstance(row, MalformedLine):
                raise ValueError(row.reason)
            ids = np.asarray(row["ids"], dtype=np.int32)
            actions = np.asarray(row["actions"], dtype=np.int64)
            positions = np.asarray(row["positions"], dtype=np.int64)
            reward = float(row["reward"])
            start = int(row["response_start"])
        except (KeyError, TypeError, ValueError) as err:
            raise DataFormatError(f"{where} is not an episode record ({err})") from err
        if len(actions) == 0 or len(actions) != len(positions) or positions.max(initial=0) >= len(ids):
            raise DataFormatError(f"{where}: actions and positions do not fit the ids")
        examples.append(TokenizedExample(ids, start, Transitions(actions, positions, reward)))
        if max_episodes is not None and len(examples) >= max_episodes:
            break
    if not examples:
        raise DataFormatError(f"{file} holds no episodes")
    return examples
