r"""Procedural arithmetic word problems as a math task: the micro math tier.

The math family's answer protocol: the prompt asks for the answer within ``\boxed{}``; the
episode ends as soon as a box is closed (or at an end-of-sequence token); the math grader
(:func:`~cola_gym.tasks.math.grading.grade_text`, boxed format) pays 1 for a right boxed
answer and 0 otherwise: a GSM8K-style ``#### n`` line or a bare number earns nothing.
Problems come from :mod:`cola_gym.tasks.math.word_problems` by level, split and index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from cola_gym.envs.task import TASK_INDEX, TaskStart, TurnOutcome
from cola_gym.tasks.math.data import MathProblem
from cola_gym.tasks.math.grading import answer_is_complete, grade_text
from cola_gym.tasks.math.task import MathState
from cola_gym.tasks.math.word_problems import (
    ANSWER_STYLES,
    WordProblem,
    WordProblemLevel,
    generate_problem,
    held_out_keys,
    solution_text,
    styles_of,
)
from cola_gym.tasks.procedural import ProceduralTask
from cola_gym.text.chat import Message

INSTRUCTION = "Put your final answer within \\boxed{}."
DEMONSTRATION_STYLES = ("steps", "mixed")
_MAX_REDRAWS = 1_000


class WordProblemTask(ProceduralTask[MathState]):
    r"""Arithmetic word problems, graded by the math grader.

    Args:
        level: a :class:`~cola_gym.tasks.math.word_problems.WordProblemLevel` or its fields as
            a mapping (``cola_gym/tasks/math/spec.toml`` declares the ladder).
        split: ``"test"`` (the fixed evaluation set: seed 1, 256 problems) or ``"train"``
            (seed 0, 1,000,000 problems, none of them a test problem's arithmetic).
        seed: another set of problems (overrides the split's seed).
        size: how many problems the set has (``task_index`` in ``[0, size)``).
        demonstrations: ``"steps"`` (every solution written out, then boxed) or ``"mixed"``
            (each solution in one of :data:`~cola_gym.tasks.math.word_problems.ANSWER_STYLES`,
            drawn per problem: a model trained on them boxes its answer only some of the time,
            which leaves RL a format to settle on).

    Reset options: ``task_index`` (alias ``problem_index``). ``info`` adds ``answer`` (the
    extracted answer), ``is_correct`` and ``problem_index``, as the other math ids do.
    """

    info_keys: ClassVar[tuple[str, ...]] = ("answer", "is_correct", "problem_index")
    option_aliases: ClassVar[Mapping[str, str]] = {"problem_index": TASK_INDEX}
    split_seeds: ClassVar[Mapping[str, int]] = {"test": 1, "train": 0}
    split_sizes: ClassVar[Mapping[str, int]] = {"test": 256, "train": 1_000_000}

    def __init__(
        self,
        level: Mapping[str, Any] | WordProblemLevel | None = None,
        split: str = "test",
        seed: int | None = None,
        size: int | None = None,
        demonstrations: str = "steps",
    ) -> None:
        if demonstrations not in DEMONSTRATION_STYLES:
            raise ValueError(f"demonstrations must be one of {DEMONSTRATION_STYLES}, got {demonstrations!r}")
        super().__init__(split, seed, size)
        self.level = WordProblemLevel.from_spec(level or {})
        self.demonstration_style = demonstrations

    @cached_property
    def _held_out(self) -> frozenset[Any]:
        if self.split != "train":
            return frozenset()
        return held_out_keys(self.level, self.split_seeds["test"], self.split_sizes["test"])

    def problem(self, index: int) -> WordProblem:
        """Problem ``index`` of this set (a train problem is redrawn while it is a test problem)."""
        for redraw in range(_MAX_REDRAWS):
            problem = generate_problem(self.level, self.seed, index, redraw)
            if problem.key not in self._held_out:
                return problem
        raise ValueError(f"every draw of train problem {index} is a test problem: the level {self.level} is too small")

    def prompt(self, problem: WordProblem) -> list[Message]:
        """The prompt messages of ``problem``."""
        return [{"role": "user", "content": f"{problem.text}\n{INSTRUCTION}"}]

    def begin(self, options: Mapping[str, Any], rng: np.random.Generator) -> TaskStart[MathState]:
        index = options.get(TASK_INDEX)
        problem = self.problem(int(rng.integers(self.size)) if index is None else index)
        state = MathState(MathProblem(problem.index, problem.text, str(problem.answer), solution_text(problem)))
        return TaskStart(state, tuple(self.prompt(problem)), problem.index)

    def turn_complete(self, state: MathState, turn_text: str) -> bool:
        return answer_is_complete(turn_text, "boxed")

    def end_turn(self, state: MathState, turn_text: str) -> TurnOutcome[MathState]:
        grade = grade_text(turn_text, state.problem.answer, "boxed")
        graded = replace(state, answer=grade.answer or "", is_correct=grade.is_correct)
        return TurnOutcome(graded, reward=float(grade.is_correct), terminated=True, success=grade.is_correct)

    def info(self, state: MathState) -> dict[str, Any]:
        return {"answer": state.answer, "is_correct": state.is_correct, "problem_index": state.problem.index}

    def describe(self, state: MathState) -> str:
        return f"{state.problem.problem}\n\nreference answer: {state.problem.answer}\n\n{state.problem.solution}"

    def demonstrations(self) -> Iterable[tuple[Sequence[Message], str]]:
        """Worked solutions, one per problem of the set, in order (styles as ``demonstrations`` says)."""
        for index in range(self.size):
            problem = self.problem(index)
            style = ANSWER_STYLES[0] if self.demonstration_style == "steps" else styles_of(self.seed, [index])[0]
            yield self.prompt(problem), solution_text(problem, style)
