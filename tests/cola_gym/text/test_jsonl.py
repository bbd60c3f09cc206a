"""JSON lines files with a line that is not UTF-8: that line is skipped with a warning naming
file and line, for every reader (data sets, training data, logged episodes)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cola_gym.registration import load_task_specs
from cola_gym.tasks.math.data import MathDataset, load_math_problems
from cola_gym.text.jsonl import MalformedLine, jsonl_lines
from cola_gym.training import TextSource, load_examples
from cola_gym.training.q_records import load_episodes

NOT_UTF8 = b'{"question": "caf\xe9?", "answer": "#### 1"}\n'


def _write(path: Path, lines: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))
    return path


def _row(**fields: object) -> bytes:
    return json.dumps(fields).encode() + b"\n"


def test_lines_are_parsed_and_a_bad_line_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path / "rows.jsonl", [_row(a=1), NOT_UTF8, b"\n", b"{not json\n", _row(a=2)])
    with caplog.at_level(logging.WARNING):
        rows = list(jsonl_lines(path))
    assert [where for where, _ in rows] == [f"{path}:1", f"{path}:4", f"{path}:5"]
    assert rows[0][1] == {"a": 1} and isinstance(rows[1][1], MalformedLine) and rows[2][1] == {"a": 2}
    assert f"{path}:2 is not UTF-8" in caplog.text


def test_a_data_set_skips_a_non_utf8_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = load_task_specs()["math"]["datasets"]["gsm8k"]
    dataset = MathDataset.from_spec({"name": "gsm8k", **spec})
    path = tmp_path / dataset.source("test").path
    _write(path, [_row(question="What is 1 + 1?", answer="1 + 1 = 2\n#### 2"), NOT_UTF8,
                  _row(question="What is 2 + 2?", answer="#### 4")])  # fmt: skip
    with caplog.at_level(logging.WARNING):
        problems = load_math_problems(dataset, "test", tmp_path)
    assert [p.answer for p in problems] == ["2", "4"]
    assert f"{path}:2 is not UTF-8" in caplog.text


def test_training_data_skips_a_non_utf8_line(tiny_cola, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    docs = _write(tmp_path / "docs.jsonl", [_row(text="A short document."), NOT_UTF8, _row(text="Another one.")])
    corpus = _write(tmp_path / "corpus.txt", [b"word " * 100, b"\xff\xfe", b" word" * 100])
    with caplog.at_level(logging.WARNING):
        texts = load_examples([TextSource(str(docs), text_field="text")], tiny_cola.tokenizer, 64)
        pieces = load_examples([TextSource(str(corpus))], tiny_cola.tokenizer, 64)
    assert len(texts) == 2 and len(pieces) >= 3
    assert f"{docs}:2 is not UTF-8" in caplog.text and f"{corpus} is not all UTF-8" in caplog.text


def test_logged_episodes_skip_a_non_utf8_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    episode = _row(ids=[1, 2, 3], actions=[4, 5], positions=[1, 2], reward=1.0, response_start=1)
    path = _write(tmp_path / "episodes.jsonl", [episode, b"\x80\x81\n", episode])
    with caplog.at_level(logging.WARNING):
        assert len(load_episodes(path)) == 2
    assert f"{path}:2 is not UTF-8" in caplog.text
