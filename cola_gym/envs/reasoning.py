"""Procedural reasoning tasks from `reasoning-gym`_ (generators and scorers made for RL).

Any of the library's data sets is a task: ``gym.make("CoLA-ReasoningGym-v0",
dataset="chain_sum", config={"min_terms": 2, "max_terms": 2})``; ``envs/reasoning.toml``
declares curated ids with difficulty levels. The prompt is the library's question plus an
instruction to answer inside ``<answer>`` tags (``prompt_style="answer"``) or to think in
``<think>`` tags first (``"think"``). The episode ends at ``</answer>`` or an
end-of-sequence token.

Answers: the last ``<answer>...</answer>``, else the task's ``extractor`` (its answers'
usual form: last number, first yes/no, last word or last line; see
:mod:`cola_gym.rewards.extractors`). Reward: the library's score in [0, 1] (some scorers
give partial credit), at least ``format_reward`` for a tagged answer; ``is_success`` when
the score is 1.

Safety: the scorers of ``countdown`` and ``puzzle24`` evaluate the answer with sympy's
``parse_expr`` (which calls ``eval``) and accept factorials or unused numbers, so answers
to those are graded by the project's exact evaluator instead (every given number exactly
once, only ``+ - * /``). Data sets whose scorers ``eval`` model text in other ways are
refused. Every other scorer runs on at most 1,000 characters and any exception it raises
scores 0. Data sets are always seeded: the test split (seed 1,000,000,000) is a fixed
evaluation set; the train split (seed 0, items ``Random(seed + index)``) never reuses its
seeds, though in a small problem space the same question can occur in both.

.. _reasoning-gym: https://github.com/open-thought/reasoning-gym
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from cola_gym.envs.countdown import grade_countdown
from cola_gym.envs.task import TASK_INDEX, Message, Task, TaskStart, TurnOutcome
from cola_gym.rewards.extractors import (
    ANSWER_INSTRUCTION,
    EXTRACTORS,
    MAX_ANSWER_CHARS,
    THINK_INSTRUCTION,
    Extractor,
    answer_closed,
    extract,
)

SPLIT_SEEDS = {"test": 1_000_000_000, "train": 0}
SPLIT_SIZES = {"test": 512, "train": 1_000_000}

EXPRESSION_SCORED = {"countdown": None, "puzzle24": 24}
"""Data sets graded by the project's evaluator (value: a fixed target, else the item's)."""

UNSAFE_SCORERS = frozenset(
    {
        "polynomial_multiplication",
        "simple_integration",
        "intermediate_integration",
        "string_insertion",
        "spiral_matrix",
        "binary_matrix",
        "n_queens",
    }
)
"""Data sets whose library scorer executes model text (``eval``, sympy ``parse_expr``)."""

PROMPT_STYLES = {"answer": ANSWER_INSTRUCTION, "think": THINK_INSTRUCTION}


def _reasoning_gym() -> Any:
    try:
        import reasoning_gym
    except ImportError as err:  # pragma: no cover - the extra is installed in the test env
        raise ImportError(
            "reasoning tasks need reasoning-gym: pip install 'cola-gym[reasoning]' (reasoning-gym==0.1.25)"
        ) from err
    return reasoning_gym


@dataclass(frozen=True)
class ReasoningState:
    """A reasoning episode: the library's item, and the scored answer once there is one."""

    entry: Mapping[str, Any]
    index: int
    answer: str = ""
    extracted_by: str = ""
    score: float = 0.0


class ReasoningGymTask(Task[ReasoningState]):
    """One reasoning-gym data set as a task.

    Args:
        dataset: the library's data set name (``"chain_sum"``, ``"lcm"``, ...).
        config: the data set's config fields (difficulty knobs), without ``seed``/``size``.
        split: ``"test"`` (fixed evaluation set: 512 items) or ``"train"`` (1,000,000).
        seed / size: another seed or size than the split's.
        extractor: the fallback answer form when there are no ``<answer>`` tags:
            ``"last_number"``, ``"first_yes_no"``, ``"last_word"``, ``"last_line"``,
            ``"tag"`` (tags only) or ``"auto"`` (by the shape of each item's reference).
        prompt_style: ``"answer"`` (answer inside tags) or ``"think"`` (think, then answer).
        format_reward: the least reward of an answer given inside ``<answer>`` tags.

    ``info`` adds ``answer`` (the extracted answer), ``extracted_by`` (``"tag"``, the
    fallback's name, or ``"none"``), ``score`` (the library's score) and ``reference``.
    """

    info_keys: ClassVar[tuple[str, ...]] = ("answer", "extracted_by", "score", "reference")

    def __init__(
        self,
        dataset: str,
        config: Mapping[str, Any] | None = None,
        split: str = "test",
        seed: int | None = None,
        size: int | None = None,
        extractor: Extractor = "auto",
        prompt_style: str = "answer",
        format_reward: float = 0.0,
    ) -> None:
        if split not in SPLIT_SEEDS:
            raise ValueError(f"split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}")
        if extractor not in EXTRACTORS:
            raise ValueError(f"extractor must be one of {EXTRACTORS}, got {extractor!r}")
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {sorted(PROMPT_STYLES)}, got {prompt_style!r}")
        if not 0.0 <= format_reward < 1.0:
            raise ValueError(f"format_reward must be in [0, 1), got {format_reward}")
        if dataset in UNSAFE_SCORERS:
            raise ValueError(
                f"reasoning-gym's scorer for {dataset!r} executes model text (eval); cola-gym does not run it "
                "on model output. Pick another data set, or write a Task with a safe scorer."
            )
        config = dict(config or {})
        for key in ("seed", "size"):
            if key in config:
                raise ValueError(f"give {key} as the task's argument, not inside config")
        self.dataset = dataset
        self.config = config
        self.split = split
        self.seed = SPLIT_SEEDS[split] if seed is None else int(seed)
        self.size = SPLIT_SIZES[split] if size is None else int(size)
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.extractor: Extractor = extractor
        self.prompt_style = prompt_style
        self.format_reward = float(format_reward)
        self._data = self._create()

    def _create(self) -> Any:
        library = _reasoning_gym()
        try:
            return library.create_dataset(self.dataset, seed=self.seed, size=self.size, **self.config)
        except ValueError as err:
            if "not registered" in str(err):
                names = sorted(library.factory.DATASETS)
                raise ValueError(f"reasoning-gym has no data set {self.dataset!r}; choose one of {names}") from None
            raise ValueError(f"bad config for reasoning-gym {self.dataset!r}: {err}") from None
        except (TypeError, AssertionError) as err:
            raise ValueError(f"bad config for reasoning-gym {self.dataset!r} {self.config}: {err}") from None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_data"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._data = self._create()

    @property
    def num_tasks(self) -> int:
        return self.size

    def entry(self, index: int) -> Mapping[str, Any]:
        """The library's item ``index`` (question, answer, metadata)."""
        return self._data[index]

    def begin(self, options: Mapping[str, Any], rng: np.random.Generator) -> TaskStart[ReasoningState]:
        index = options.get(TASK_INDEX)
        index = int(rng.integers(self.size)) if index is None else index
        entry = self.entry(index)
        return TaskStart(ReasoningState(entry, index), tuple(self.prompt(entry)), index)

    def prompt(self, entry: Mapping[str, Any]) -> list[Message]:
        """The prompt messages of an item: its question and the prompt style's instruction."""
        return [{"role": "user", "content": f"{entry['question'].rstrip()}\n{PROMPT_STYLES[self.prompt_style]}"}]

    def turn_complete(self, state: ReasoningState, turn_text: str) -> bool:
        return answer_closed(turn_text)

    def end_turn(self, state: ReasoningState, turn_text: str) -> TurnOutcome[ReasoningState]:
        reference = state.entry.get("answer")
        found = extract(turn_text, self.extractor, None if reference is None else str(reference))
        score = self.score(found.answer, state.entry)
        scored = replace(state, answer=found.answer or "", extracted_by=found.extracted_by, score=score)
        reward = max(score, self.format_reward) if found.extracted_by == "tag" else score
        return TurnOutcome(scored, reward=reward, success=score >= 1.0)

    def score(self, answer: str | None, entry: Mapping[str, Any]) -> float:
        """The score of ``answer`` for ``entry`` in [0, 1]: the library's scorer, made safe."""
        if answer is None or len(answer) > MAX_ANSWER_CHARS:
            return 0.0
        if self.dataset in EXPRESSION_SCORED:
            metadata = entry["metadata"]
            target = EXPRESSION_SCORED[self.dataset] or metadata["target"]
            return float(grade_countdown(answer, metadata["numbers"], target).is_correct)
        try:
            score = float(self._data.score_answer(answer=answer, entry=entry))
        except Exception:  # noqa: BLE001 - a scorer that raises on odd text scores it 0
            return 0.0
        return min(max(score, 0.0), 1.0) if math.isfinite(score) else 0.0

    def info(self, state: ReasoningState) -> dict[str, Any]:
        reference = state.entry.get("answer")
        return {
            "answer": state.answer,
            "extracted_by": state.extracted_by,
            "score": state.score,
            "reference": "" if reference is None else str(reference),
        }

    def demonstrations(self) -> Iterable[tuple[Sequence[Message], str]]:
        """Each item's reference answer inside ``<answer>`` tags (items without one are skipped)."""
        for index in range(self.size):
            entry = self.entry(index)
            if entry.get("answer") is not None:
                yield self.prompt(entry), f"<answer>{entry['answer']}</answer>"

    def describe(self, state: ReasoningState) -> str:
        return f"{state.entry['question']}\n\nreference answer: {state.entry.get('answer')}"
