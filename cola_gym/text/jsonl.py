"""JSON lines files, read line by line: a line that is not UTF-8 is skipped with a warning.

Every reader of the project's JSONL files (data sets, training data, logged episodes) goes
through :func:`jsonl_lines`, so a stray byte in one line costs that line, never the file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MalformedLine:
    """A line that is UTF-8 but not JSON: why, for the caller to skip or refuse."""

    reason: str


def jsonl_lines(path: str | os.PathLike[str]) -> Iterator[tuple[str, Any]]:
    """Yields ``("<path>:<line number>", value)`` for every non-blank line of ``path``.

    ``value`` is the parsed JSON, or a :class:`MalformedLine` when the line is not JSON.
    Lines that are not UTF-8 are skipped with a warning naming the file and line.
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{os.fspath(path)}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                logger.warning("%s is not UTF-8 text (byte %d: %s); line skipped", where, err.start, err.reason)
                continue
            if not line.strip():
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as err:
                yield where, MalformedLine(f"not valid JSON ({err.msg})")
