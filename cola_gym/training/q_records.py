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
    """Appends records to a JSON-lines file in one write; returns how many were written."""
    lines = [json.dumps(record) + "\n" for record in records]
    if lines:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            data = "".join(lines).encode("utf-8")
            while data:
                data = data[os.write(descriptor, data) :]
        finally:
            os.close(descriptor)
    return len(lines)


def logged_problems(path: str | os.PathLike[str]) -> set[int]:
    """The problem indices of the episodes in ``path`` (empty if it does not exist).

    A last line without its newline (a writer killed mid-line) is cut off the file first.

    Raises:
        DataFormatError: for a line that is not an episode record.
    """
    file = Path(path)
    if not file.is_file():
        return set()
    with open(file, "rb+") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            handle.truncate(end)
    problems = set()
    for where, row in jsonl_lines(file):
        try:
            if isinstance(row, MalformedLine):
                raise ValueError(row.reason)
            problems.add(int(row["problem_index"]))
        except (KeyError, TypeError, ValueError) as err:
            raise DataFormatError(f"{where} is not an episode record ({err}); write to a new file") from err
    return problems


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
