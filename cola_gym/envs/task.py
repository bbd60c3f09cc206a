"""The task contract: what a task family implements, as pure functions of its own state.

A task knows nothing of models, tokens or Gymnasium. It chooses an episode's content
(:meth:`Task.begin`), says when a turn of text is complete and scores it
(:meth:`Task.turn_complete`, :meth:`Task.end_turn`). Its per-episode state (a math
problem; a game's world) is an immutable value that hooks take and return, never an
attribute of ``self``: an episode can then be snapshotted, branched by tree search and
continued, for every task alike (:mod:`cola_gym.envs.episode`).

A new task is one :class:`Task` subclass plus an ``[[env]]`` entry in its family's
``cola_gym/tasks/<family>/spec.toml`` (see ``docs/writing-a-task.md``).
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from cola_gym.text.chat import Message

TaskState = TypeVar("TaskState")

TASK_INDEX = "task_index"


@dataclass(frozen=True)
class TaskStart(Generic[TaskState]):
    """A new episode's content, from :meth:`Task.begin`.

    Attributes:
        state: the task's immutable state for this episode.
        messages: the prompt as chat messages.
        index: the task instance's index (``info["task_index"]``), -1 for one posed by hand.
    """

    state: TaskState
    messages: tuple[Message, ...]
    index: int = -1


@dataclass(frozen=True)
class TurnOutcome(Generic[TaskState]):
    """A task's verdict on a finished turn, from :meth:`Task.end_turn`.

    Attributes:
        state: the task's state after the turn (the same object when nothing changed).
        reward: reward of the step that finished the turn.
        terminated: whether the episode ends here.
        next_message: when the episode goes on, the message (a user turn: the task's
            observation) appended before the model's next turn.
        success: ``info["is_success"]`` from now on; ``None`` keeps it, except that an
            ending turn without a verdict counts as a success when it pays a positive reward.
    """

    state: TaskState
    reward: float = 0.0
    terminated: bool = True
    next_message: str | None = None
    success: bool | None = None

    def __post_init__(self) -> None:
        if not self.terminated and self.next_message is None:
            raise ValueError("a turn that does not end the episode needs a next_message")


class Task(ABC, Generic[TaskState]):
    """A task family: chooses episodes, completes and scores turns.

    Subclasses implement :meth:`begin` and :meth:`end_turn`, and may override
    :meth:`turn_complete`, :meth:`info`, :meth:`anchor`, :meth:`action_mask`, :meth:`describe`
    and :meth:`demonstrations`. They declare the reset options they accept
    (:attr:`option_keys`, with ``task_index`` always accepted) and the ``info`` keys they add
    (:attr:`info_keys`). Tasks must be picklable; hooks must not mutate ``self``.
    """

    info_keys: ClassVar[tuple[str, ...]] = ()
    """The keys :meth:`info` returns, present in ``info`` from ``reset`` on."""

    option_keys: ClassVar[tuple[str, ...]] = ()
    """Reset options accepted beside ``task_index``."""

    option_aliases: ClassVar[Mapping[str, str]] = {}
    """Other names of options (``{"problem_index": "task_index"}``)."""

    @property
    def num_tasks(self) -> int | None:
        """How many indexed instances there are (``task_index`` in ``[0, num_tasks)``), or ``None``."""
        return None

    def check_options(self, options: Any) -> dict[str, Any]:
        """Validates reset options without changing anything; returns them under canonical names.

        Raises:
            TypeError: ``options`` is not a mapping.
            ValueError: an unknown key, or a bad ``task_index``.
        """
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            raise TypeError(
                f"options must be a dict such as {{'{TASK_INDEX}': 3}} or None, got {type(options).__name__} "
                f"{options!r:.60}"
            )
        accepted = (TASK_INDEX, *self.option_keys)
        checked: dict[str, Any] = {}
        for key, value in options.items():
            name = self.option_aliases.get(key, key)
            if name not in accepted:
                names = sorted({*accepted, *self.option_aliases})
                raise ValueError(f"unknown reset option {key!r} for {type(self).__name__}; accepted: {names}")
            if name in checked:
                raise ValueError(f"reset option {name!r} given twice (as {key!r} and under another name)")
            checked[name] = value
        if TASK_INDEX in checked:
            checked[TASK_INDEX] = self._check_index(checked[TASK_INDEX])
        return checked

    def _check_index(self, index: Any) -> int:
        count = self.num_tasks
        valid = isinstance(index, numbers.Integral) and not isinstance(index, (bool, np.bool_))
        if not valid or count is None or not 0 <= int(index) < count:
            bounds = "this task has no indexed instances" if count is None else f"an int in [0, {count})"
            raise ValueError(f"options['{TASK_INDEX}'] must be {bounds}, got {index!r}")
        return int(index)

    @abstractmethod
    def begin(self, options: Mapping[str, Any], rng: np.random.Generator) -> TaskStart[TaskState]:
        """Chooses an episode from checked ``options`` (else with ``rng``); returns its state and prompt."""

    def turn_complete(self, state: TaskState, turn_text: str) -> bool:
        """Whether the turn is finished before any end-of-sequence token (default: never)."""
        return False

    @abstractmethod
    def end_turn(self, state: TaskState, turn_text: str) -> TurnOutcome[TaskState]:
        """Scores a finished turn (``turn_text`` excludes the end-of-sequence token)."""

    def info(self, state: TaskState) -> dict[str, Any]:
        """The values of :attr:`info_keys` for ``state`` (small, tensor-free)."""
        return {}

    def anchor(self, state: TaskState) -> Hashable | None:
        """A value equal for two states exactly when the world is the same (``None``: no such value).

        Multi-turn tasks whose world states can be compared give one: ``info["anchor"]`` carries
        it, and step-level credit (GRPO's ``step_credit``) compares the turns of different
        episodes that start from the same world state. Must be picklable.
        """
        return None

    def action_mask(self, state: TaskState, num_actions: int) -> np.ndarray | None:
        """``bool[num_actions]`` of allowed actions, or ``None`` for all of them."""
        return None

    def describe(self, state: TaskState) -> str:
        """A human-readable account of the episode's content and its reference (for the CLI)."""
        return ""

    def demonstrations(self) -> Iterable[tuple[Sequence[Message], str]]:
        """Worked examples as (prompt messages, response): the training data of this task."""
        raise NotImplementedError(f"{type(self).__name__} has no demonstrations to train on")
