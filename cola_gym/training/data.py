"""Training text: math solutions, JSON-lines and plain-text corpora, tokenized for CoLA.

Sources are written as strings (the command line uses the same forms):

- an env id (``"CoLA-GSM8K-Train-v0"``) or its short name from the task specs
  (``"gsm8k:train"``, ``"math:train"``, ...): the task's demonstrations
  (:meth:`~cola_gym.envs.task.Task.demonstrations`) as chats, prompted exactly as the env
  prompts the model (the task owns the prompt; both render it with the same function);
- ``"path/to/file.jsonl"`` with ``text_field`` (one document per row) or with
  ``prompt_field`` + ``response_field`` (a chat per row: the prompt a user turn, or a list of
  chat messages such as ``cola-gym demos`` writes under ``messages``);
- ``"path/to/file.txt"``: plain text, cut into ``seq_len``-token pieces.

An example is a token sequence and the index where its response starts: everything is
trained on in stages 1a/1b; stage 2 learns the response only (the prompt is masked).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cola_gym.errors import DataFormatError, DataNotFoundError
from cola_gym.text.chat import Message, render_exchange
from cola_gym.text.jsonl import MalformedLine, jsonl_lines

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextSource:
    """One training corpus (see the module docstring for the forms of ``spec``).

    Attributes:
        spec: ``"<data set>:<split>"`` or a ``.jsonl`` / ``.txt`` path.
        text_field: JSON-lines field holding a whole document.
        prompt_field: JSON-lines field holding the user turn of a chat, or the chat so far (a
            list of ``{"role", "content"}`` messages).
        response_field: JSON-lines field holding the assistant turn.
        max_examples: use at most this many examples (the first ones).
    """

    spec: str
    text_field: str | None = None
    prompt_field: str | None = None
    response_field: str | None = None
    max_examples: int | None = None

    def __post_init__(self) -> None:
        if self.is_file and self.spec.endswith(".jsonl"):
            chat = self.prompt_field is not None and self.response_field is not None
            if chat == (self.text_field is not None):
                raise ValueError(
                    f"{self.spec}: give either text_field, or prompt_field and response_field (JSON-lines fields)"
                )
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"max_examples must be >= 1, got {self.max_examples}")

    @property
    def is_file(self) -> bool:
        """Whether ``spec`` names a file (rather than a registered data set)."""
        return self.spec.endswith((".jsonl", ".txt"))


@dataclass(frozen=True)
class Transitions:
    """The latent actions of a logged episode, where they were taken, and its terminal reward.

    Attributes:
        actions: ``[n]`` the latent actions.
        positions: ``[n]`` the index in the example's ids of each action's state.
        reward: the terminal reward (the last action's; 0 for every other action).
    """

    actions: np.ndarray
    positions: np.ndarray
    reward: float


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids ``[T]``, the position where the response (stage 2's target) starts, and,
    for logged episodes (Q-learning), their transitions.

    A whole multi-turn chat (:func:`merge_chat_turns`) also has ``earlier_responses``: the
    ``(start, end)`` spans of its earlier assistant turns, which count as responses too.
    """

    ids: np.ndarray
    response_start: int
    transitions: Transitions | None = None
    earlier_responses: tuple[tuple[int, int], ...] = ()

    @property
    def response_spans(self) -> tuple[tuple[int, int], ...]:
        """Every response's ``(start, end)`` positions in ``ids``, the last one included."""
        return (*self.earlier_responses, (self.response_start, len(self.ids)))


def merge_chat_turns(examples: Sequence[TokenizedExample]) -> list[TokenizedExample]:
    """Folds a multi-turn task's per-turn examples into one example per chat.

    A task with turns (household games) gives one example per assistant turn, each the chat so
    far plus that turn: a game of ``n`` turns costs ``n`` passes over a growing transcript.
    Where an example's ids (response included) begin the next example's, the two become one
    whose responses are both: the same targets, in one pass. Examples that do not chain stay
    as they are.
    """
    merged: list[TokenizedExample] = []
    for example in examples:
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.transitions is None
            and example.transitions is None
            and len(last.ids) <= example.response_start
            and np.array_equal(example.ids[: len(last.ids)], last.ids)
        ):
            merged[-1] = TokenizedExample(example.ids, example.response_start, None, last.response_spans)
        else:
            merged.append(example)
    return merged


def load_examples(
    sources: Sequence[TextSource],
    tokenizer: Any,
    seq_len: int,
    data_dir: str | os.PathLike[str] | None = None,
) -> list[TokenizedExample]:
    """Tokenizes every source (in order) into examples of at most ``seq_len`` tokens."""
    examples: list[TokenizedExample] = []
    for source in sources:
        # islice: a procedural task's demonstrations may be endless
        found = list(itertools.islice(_examples_of(source, tokenizer, seq_len, data_dir), source.max_examples))
        if not found:
            raise DataFormatError(f"{source.spec} produced no training examples")
        examples.extend(found)
    return examples


def examples_fingerprint(examples: Sequence[TokenizedExample]) -> str:
    """A short hash of the token content (identifies a corpus in caches and model cards)."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(np.int64(example.response_start).tobytes())
        if example.earlier_responses:
            digest.update(np.asarray(example.earlier_responses, dtype=np.int64).tobytes())
        digest.update(example.ids.astype(np.int32).tobytes())
    return digest.hexdigest()[:16]


def _examples_of(
    source: TextSource, tokenizer: Any, seq_len: int, data_dir: str | os.PathLike[str] | None
) -> Iterable[TokenizedExample]:
    if not source.is_file:
        for messages, response in task_chats(source.spec, data_dir):
            yield _chat_example(tokenizer, messages, response, seq_len)
        return
    path = Path(source.spec).expanduser()
    if not path.is_file():
        raise DataNotFoundError(f"training data file {path} does not exist")
    if path.suffix == ".txt":
        ids = tokenizer(_read_text(path), add_special_tokens=True)["input_ids"]
        for start in range(0, max(1, len(ids) - 1), seq_len):
            piece = ids[start : start + seq_len]
            if len(piece) >= 2:
                yield TokenizedExample(np.asarray(piece, dtype=np.int32), 0)
        return
    for where, row in _jsonl_rows(path):
        if source.text_field is not None:
            text = _field(row, source.text_field, where)
            ids = tokenizer(text, add_special_tokens=True)["input_ids"][:seq_len]
            if len(ids) >= 2:
                yield TokenizedExample(np.asarray(ids, dtype=np.int32), 0)
        else:
            assert source.prompt_field is not None and source.response_field is not None
            messages = _messages(row, source.prompt_field, where)
            yield _chat_example(tokenizer, messages, _field(row, source.response_field, where), seq_len)


def task_chats(spec: str, data_dir: str | os.PathLike[str] | None) -> Iterable[tuple[Sequence[Message], str]]:
    """The (prompt messages, response) demonstrations of a task source (env id or short name)."""
    from cola_gym.registration import registry

    entries = registry()
    env_id = entries.by_data_name.get(spec, spec)
    if env_id not in entries:
        raise ValueError(
            f"unknown training source {spec!r}: use an env id, a short name of {sorted(entries.by_data_name)}, "
            "or a .jsonl / .txt file"
        )
    task = entries.task_for(env_id, data_dir=data_dir)
    try:
        yield from task.demonstrations()
    except ValueError as err:
        raise DataFormatError(f"{spec}: {err}") from err


def _chat_example(tokenizer: Any, messages: Sequence[Message], response: str, seq_len: int) -> TokenizedExample:
    """The prompt rendered as the env renders it, then the response and its end-of-turn marker."""
    prompt_text, response_text = render_exchange(tokenizer, messages, response)
    has_template = getattr(tokenizer, "chat_template", None) is not None
    prompt_ids = tokenizer(prompt_text, add_special_tokens=not has_template)["input_ids"]
    response_ids = tokenizer(response_text, add_special_tokens=False)["input_ids"]
    ids = (list(prompt_ids) + list(response_ids))[:seq_len]
    return TokenizedExample(np.asarray(ids, dtype=np.int32), min(len(prompt_ids), len(ids)))


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        logger.warning("%s is not all UTF-8 text (first bad byte at %d); bad bytes replaced", path, err.start)
        return raw.decode("utf-8", errors="replace")


def _jsonl_rows(path: Path) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for where, row in jsonl_lines(path):
        if isinstance(row, MalformedLine):
            raise DataFormatError(f"{where} is {row.reason}")
        if not isinstance(row, Mapping):
            raise DataFormatError(f"{where}: expected a JSON object")
        yield where, row


def _messages(row: Mapping[str, Any], name: str, where: str) -> list[Message]:
    """The prompt field as chat messages: a string is one user turn; a list is the chat itself."""
    value = row.get(name)
    if isinstance(value, list):
        roles = ("system", "user", "assistant")
        if not value or not all(
            isinstance(m, Mapping) and m.get("role") in roles and isinstance(m.get("content"), str) for m in value
        ):
            raise DataFormatError(
                f"{where}: field {name!r} must be a non-empty list of {{'role': {roles}, 'content': str}} messages"
            )
        return [{"role": m["role"], "content": m["content"]} for m in value]
    return [{"role": "user", "content": _field(row, name, where)}]


def _field(row: Mapping[str, Any], name: str, where: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value:
        raise DataFormatError(f"{where}: field {name!r} is missing or not a non-empty string")
    return value
