"""Procedural reasoning tasks from `reasoning-gym`_ (generators and scorers made for RL).

Any of the library's data sets is a task: ``gym.make("CoLA-ReasoningGym-v0",
dataset="chain_sum", config={"min_terms": 2, "max_terms": 2})``; ``cola_gym/tasks/reasoning/spec.toml``
declares curated ids with difficulty levels. The prompt is the library's question plus an
instruction to answer inside ``<answer>`` tags (``prompt_style="answer"``) or to think in
``<think>`` tags first (``"think"``). The episode ends at ``</answer>`` or an
end-of-sequence token.

Answers: the last ``<answer>...</answer>``, else the task's ``extractor`` (its answers'
usual form: last number, first yes/no, last word or last line; see
:mod:`cola_gym.text.answers`). Reward: 1 for a right answer, else 0 (partial credit
only where answers have parts), at least ``format_reward`` for a tagged answer;
``is_success`` when the score is 1.

Safety (:mod:`cola_gym.tasks.reasoning.scorers`): only data sets whose library scorer is vetted
never to run model text are accepted (a ``composite`` only if every member is);
``countdown`` and ``puzzle24`` are graded by the project's exact evaluator (every given
number exactly once, only ``+ - * /``). Scorers run in a worker process with a 5 s limit
on answers of at most 1,000 characters; any exception or overrun scores 0. An answer must
state one value where one is asked (``11 12``, ``1,1`` or ``YesNo`` score 0), and the
library's partial credit is paid only where answers have parts (``knights_knaves``).
Data sets are always seeded: the test split (seed 1,000,000,000) is a fixed evaluation
set; the train split (seed 0, items ``Random(seed + index)``) never reuses its seeds,
though in a small problem space the same question can occur in both.

.. _reasoning-gym: https://github.com/open-thought/reasoning-gym
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from cola_gym.envs.task import TASK_INDEX, TaskStart, TurnOutcome
from cola_gym.rewards.verifier import ReasoningGymScorer, default_reasoning_scorer
from cola_gym.tasks.countdown.grading import grade_countdown
from cola_gym.tasks.procedural import ProceduralTask
from cola_gym.tasks.reasoning.scorers import (
    EXPRESSION_SCORED,
    WRAPPERS,
    check_dataset,
    credited,
    member_spec,
    normal_form,
    states_one_value,
)
from cola_gym.text.answers import ANSWER_INSTRUCTION, MAX_ANSWER_CHARS, THINK_INSTRUCTION, AnswerProtocol, Extractor
from cola_gym.text.chat import Message

_KEPT_ENTRIES = 1024  # some generators take 100 ms an item; an episode reads its item twice

PROMPT_STYLES = {"answer": ANSWER_INSTRUCTION, "think": THINK_INSTRUCTION}


def _reasoning_gym() -> Any:
    try:
        import reasoning_gym
    except ImportError as err:  # pragma: no cover - the extra is installed in the test env
        raise ImportError(
            "reasoning tasks need reasoning-gym: pip install 'cola-gym[reasoning]' (reasoning-gym==0.1.25)"
        ) from err
    return reasoning_gym


def reasoning_gym_datasets() -> frozenset[str]:
    """The names of every data set the installed reasoning-gym offers."""
    return frozenset(_reasoning_gym().factory.DATASETS)


@dataclass(frozen=True)
class ReasoningState:
    """A reasoning episode: the library's item, and the scored answer once there is one."""

    entry: Mapping[str, Any]
    index: int
    answer: str = ""
    extracted_by: str = ""
    score: float = 0.0


class ReasoningGymTask(ProceduralTask[ReasoningState]):
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
    split_seeds: ClassVar[Mapping[str, int]] = {"test": 1_000_000_000, "train": 0}
    split_sizes: ClassVar[Mapping[str, int]] = {"test": 512, "train": 1_000_000}

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
        super().__init__(split, seed, size)
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {sorted(PROMPT_STYLES)}, got {prompt_style!r}")
        self.answers = AnswerProtocol(PROMPT_STYLES[prompt_style], float(format_reward), extractor)
        config = dict(config or {})
        for key in ("seed", "size"):
            if key in config:
                raise ValueError(f"give {key} as the task's argument, not inside config")
        names = reasoning_gym_datasets()
        if dataset not in names:
            raise ValueError(f"reasoning-gym has no data set {dataset!r}; choose one of {sorted(names)}")
        check_dataset(dataset, config)
        if dataset in WRAPPERS:
            config["datasets"] = [member_spec(member) for member in config["datasets"]]
        self.dataset = dataset
        self.config = config
        self.extractor: Extractor = extractor
        self.prompt_style = prompt_style
        self.format_reward = self.answers.format_reward
        self._data = self._create()
        self._entries: dict[int, Mapping[str, Any]] = {}

    def _create(self) -> Any:
        library = _reasoning_gym()
        config = dict(self.config)
        if self.dataset in WRAPPERS:
            from reasoning_gym.composite import DatasetSpec

            config["datasets"] = [DatasetSpec(**member) for member in config["datasets"]]
        try:
            return library.create_dataset(self.dataset, seed=self.seed, size=self.size, **config)
        except (ValueError, TypeError, AssertionError, AttributeError, KeyError) as err:
            raise ValueError(f"bad config for reasoning-gym {self.dataset!r} {self.config}: {err}") from None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_data", "_entries")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._data = self._create()
        self._entries = {}

    def entry(self, index: int) -> Mapping[str, Any]:
        """The library's item ``index`` (question, answer, metadata); recent items are kept."""
        if index not in self._entries:
            if len(self._entries) >= _KEPT_ENTRIES:
                self._entries.pop(next(iter(self._entries)))
            self._entries[index] = self._data[index]
        return self._entries[index]

    def begin(self, options: Mapping[str, Any], rng: np.random.Generator) -> TaskStart[ReasoningState]:
        index = options.get(TASK_INDEX)
        index = int(rng.integers(self.size)) if index is None else index
        entry = self.entry(index)
        return TaskStart(ReasoningState(entry, index), tuple(self.prompt(entry)), index)

    def prompt(self, entry: Mapping[str, Any]) -> list[Message]:
        """The prompt messages of an item: its question and the prompt style's instruction."""
        return [{"role": "user", "content": self.answers.pose(entry["question"].rstrip())}]

    def turn_complete(self, state: ReasoningState, turn_text: str) -> bool:
        return self.answers.is_complete(turn_text)

    def end_turn(self, state: ReasoningState, turn_text: str) -> TurnOutcome[ReasoningState]:
        reference = state.entry.get("answer")
        found = self.answers.extract(turn_text, None if reference is None else str(reference))
        score = self.score(found.answer, state.index)
        scored = replace(state, answer=found.answer or "", extracted_by=found.extracted_by, score=score)
        reward = self.answers.reward(score, well_formed=found.extracted_by == "tag")
        return TurnOutcome(scored, reward=reward, success=score >= 1.0)

    def score(self, answer: str | None, index: int, scorer: ReasoningGymScorer | None = None) -> float:
        """The reward of ``answer`` to item ``index``: 1 if right, else 0 (see the module docstring).

        ``scorer``: the worker that runs the library's scorer (default: the process-wide one).
        """
        if answer is None or len(answer) > MAX_ANSWER_CHARS:
            return 0.0
        entry = self.entry(index)
        metadata = entry["metadata"]
        source = str(metadata.get("source_dataset", self.dataset))
        if source in EXPRESSION_SCORED:
            target = EXPRESSION_SCORED[source] or metadata["target"]
            return float(grade_countdown(answer, metadata["numbers"], target).is_correct)
        reference = None if entry.get("answer") is None else str(entry["answer"])
        if not states_one_value(answer, reference):
            return 0.0
        answer = normal_form(answer, reference)
        scored = (scorer or default_reasoning_scorer()).score(
            self.dataset, self.config, self.seed, self.size, index, answer
        )
        score = scored.score if math.isfinite(scored.score) else 0.0
        return credited(min(max(score, 0.0), 1.0), source)

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
