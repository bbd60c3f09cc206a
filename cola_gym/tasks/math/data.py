"""Math data sets (MATH-500, MATH, GSM8K): task definitions and problem loading.

A split comes from, in order: the ``data_dir`` argument, the ``COLA_DATA_DIR``
environment variable (both: a folder holding e.g. ``math500/test.jsonl``), or the
Hugging Face Hub when online with the ``datasets`` package. If none works, one error
names all three.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cola_gym.errors import DataFormatError, DataNotFoundError
from cola_gym.tasks.math.grading import ANSWER_FORMATS, AnswerFormat, gold_answer
from cola_gym.text.jsonl import MalformedLine, jsonl_lines

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "COLA_DATA_DIR"
DIFFICULTY_SOURCES = ("", "level", "solution_steps")
"""How a data set states a problem's difficulty (see :class:`MathDataset`)."""
_LEVEL = re.compile(r"Level (\d+)")


@dataclass(frozen=True)
class SplitSource:
    """Where one split lives.

    Attributes:
        path: file under the data directory (JSON lines).
        hub_repo: Hugging Face Hub data set id.
        hub_config: its configuration name, if it has several.
        hub_split: its split name.
    """

    path: str
    hub_repo: str | None = None
    hub_config: str | None = None
    hub_split: str | None = None


@dataclass(frozen=True)
class MathDataset:
    """A math data set as declared in ``cola_gym/tasks/math/spec.toml``.

    Attributes:
        name: short name (``"math500"``).
        answer_format: ``"boxed"`` or ``"gsm8k"`` (see :mod:`cola_gym.tasks.math.grading`).
        problem_field: the row field holding the problem text.
        answer_field: the row field holding the reference answer or a solution ending in it.
        answer_is: ``"answer"`` when that field is the answer itself, ``"solution"`` when the
            answer is read from it (last ``\\boxed{}``, or the ``#### n`` line of GSM8K).
        instruction: appended to the problem in the prompt.
        splits: ``(split name, source)`` pairs.
        difficulty: how a row's difficulty is read (the math ladder's levels): ``"level"``
            (MATH's ``level`` field, ``"Level 3"`` -> 3), ``"solution_steps"`` (the non-empty
            lines of the reference solution before its ``#### n`` line: GSM8K's steps), or
            ``""`` (none).
    """

    name: str
    answer_format: AnswerFormat
    problem_field: str
    answer_field: str
    answer_is: Literal["answer", "solution"]
    instruction: str
    splits: tuple[tuple[str, SplitSource], ...]
    difficulty: str = ""

    def __post_init__(self) -> None:
        if self.difficulty not in DIFFICULTY_SOURCES:
            raise ValueError(f"{self.name}: difficulty must be one of {DIFFICULTY_SOURCES}, got {self.difficulty!r}")
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"{self.name}: answer_format must be one of {ANSWER_FORMATS}, got {self.answer_format!r}")
        if self.answer_is not in ("answer", "solution"):
            raise ValueError(f"{self.name}: answer_is must be 'answer' or 'solution', got {self.answer_is!r}")
        if not self.splits:
            raise ValueError(f"{self.name}: a data set needs at least one split")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | MathDataset) -> MathDataset:
        """Builds a data set from its TOML table (with ``name``), or returns it unchanged."""
        if isinstance(spec, MathDataset):
            return spec
        try:
            splits = tuple((name, SplitSource(**source)) for name, source in sorted(spec["splits"].items()))
            return cls(
                name=spec["name"],
                answer_format=spec["answer_format"],
                problem_field=spec["problem_field"],
                answer_field=spec["answer_field"],
                answer_is=spec["answer_is"],
                instruction=spec.get("instruction", ""),
                splits=splits,
                difficulty=spec.get("difficulty", ""),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"invalid math data set spec {dict(spec)!r}: {err}") from err

    def source(self, split: str) -> SplitSource:
        """The source of ``split``; a clear error for an unknown split."""
        sources = dict(self.splits)
        if split not in sources:
            raise ValueError(f"{self.name} has no split {split!r}; choose one of {sorted(sources)}")
        return sources[split]


@dataclass(frozen=True)
class MathProblem:
    """One problem with its reference answer (and worked solution, where the data set has one)."""

    index: int
    problem: str
    answer: str
    solution: str | None = None
    difficulty: int | None = None


def load_math_problems(
    dataset: MathDataset, split: str, data_dir: str | os.PathLike[str] | None = None
) -> tuple[MathProblem, ...]:
    """Loads a split (cached per process: every env of the same split shares it).

    Malformed rows (bad JSON, a missing field, no readable answer) are skipped with a
    warning that names them.

    Raises:
        DataNotFoundError: no source could provide the split.
        DataFormatError: the source holds no usable row.
    """
    source = dataset.source(split)
    attempts = []
    for label, directory in (("data_dir argument", data_dir), (f"${DATA_DIR_ENV}", os.environ.get(DATA_DIR_ENV))):
        if directory is None or directory == "":
            attempts.append(f"{label}: not set")
            continue
        path = Path(directory).expanduser() / source.path
        if path.is_file():
            stat = path.stat()
            return _read_jsonl(dataset, str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        attempts.append(f"{label}: {path} does not exist")
    try:
        rows = _hub_rows(source)
    except Exception as err:  # noqa: BLE001 - any Hub failure becomes one line of the error below
        attempts.append(f"Hugging Face Hub: {err}")
    else:
        return _parse_rows(dataset, rows, f"{source.hub_repo} ({source.hub_split})")
    raise DataNotFoundError(
        f"No data for {dataset.name}/{split}. Tried:\n  - "
        + "\n  - ".join(attempts)
        + f"\nPass data_dir=<folder holding {source.path}>, set {DATA_DIR_ENV} to that folder, "
        "or go online with the `datasets` package installed."
    )


@functools.lru_cache(maxsize=16)
def _read_jsonl(dataset: MathDataset, path: str, mtime_ns: int, size: int) -> tuple[MathProblem, ...]:
    return _parse_rows(dataset, jsonl_lines(path), path)


def _parse_row(dataset: MathDataset, row: Any) -> MathProblem | str:
    """The problem in ``row`` (index unset), or why the row is malformed."""
    if isinstance(row, MalformedLine):
        return row.reason
    if not isinstance(row, Mapping):
        return f"expected a JSON object, got {type(row).__name__}"
    problem, answer_text = row.get(dataset.problem_field), row.get(dataset.answer_field)
    if not isinstance(problem, str) or not problem.strip():
        return f"field {dataset.problem_field!r} is missing or not a non-empty string"
    if not isinstance(answer_text, str) or not answer_text.strip():
        return f"field {dataset.answer_field!r} is missing or not a non-empty string"
    difficulty = _difficulty(dataset, row, answer_text)
    if dataset.answer_is == "answer":
        return MathProblem(index=-1, problem=problem, answer=answer_text.strip(), difficulty=difficulty)
    answer = gold_answer(answer_text, dataset.answer_format)
    if not answer:
        return f"no reference answer can be read from field {dataset.answer_field!r}"
    return MathProblem(index=-1, problem=problem, answer=answer, solution=answer_text, difficulty=difficulty)


def _difficulty(dataset: MathDataset, row: Mapping[str, Any], solution: str) -> int | None:
    """The row's difficulty as its data set reads it (``None``: not stated)."""
    if dataset.difficulty == "level":
        found = _LEVEL.fullmatch(str(row.get("level", "")).strip())
        return int(found.group(1)) if found else None
    if dataset.difficulty == "solution_steps":
        return sum(1 for line in solution.split("####")[0].splitlines() if line.strip())
    return None


def _parse_rows(dataset: MathDataset, rows: Iterable[Any], origin: str) -> tuple[MathProblem, ...]:
    """Valid rows become problems; malformed ones are skipped with a warning naming them.

    Raises:
        DataFormatError: no row is valid (wrong file or field names).
    """
    problems: list[MathProblem] = []
    skipped: list[str] = []
    for position, item in enumerate(rows):
        where, row = item if isinstance(item, tuple) else (f"{origin} row {position}", item)
        parsed = _parse_row(dataset, row)
        if isinstance(parsed, str):
            skipped.append(f"{where}: {parsed}")
        else:
            problems.append(dataclasses.replace(parsed, index=len(problems)))
    if not problems:
        shown = "\n  ".join(skipped[:3]) or "the source is empty"
        raise DataFormatError(f"{origin} holds no usable {dataset.name} problems:\n  {shown}")
    if skipped:
        logger.warning(
            "%s: skipped %d malformed row(s) of %d: %s%s",
            origin,
            len(skipped),
            len(skipped) + len(problems),
            "; ".join(skipped[:3]),
            " ..." if len(skipped) > 3 else "",
        )
    return tuple(problems)


def _hub_rows(source: SplitSource) -> list[Any]:
    if source.hub_repo is None:
        raise RuntimeError("this split has no Hub source")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or os.environ.get(
        "HF_DATASETS_OFFLINE", ""
    ).lower() in ("1", "true", "yes"):
        raise RuntimeError("offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set)")
    try:
        import datasets
    except ImportError as err:
        raise RuntimeError("the `datasets` package is not installed (pip install 'cola-gym[hub]')") from err
    loaded = datasets.load_dataset(source.hub_repo, source.hub_config, split=source.hub_split)
    return list(loaded)
