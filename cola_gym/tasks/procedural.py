"""Procedural tasks: instances drawn by index from a seeded generator, per split.

Like reasoning-gym's ``ProceduralDataset(config, seed, size)``: a set of instances is a
seed and a size, and each split has its own default seed (the test split is a fixed
evaluation set, the train split another stream). Subclasses name their splits' seeds and
sizes and generate instance ``index`` of ``(seed, size)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from cola_gym.envs.task import Task

TaskState = TypeVar("TaskState")
Level = TypeVar("Level")


def level_from_spec(cls: type[Level], spec: Mapping[str, Any] | Level, what: str) -> Level:
    """A level dataclass from its TOML table (``operators`` as a tuple; unknown keys are an
    error naming the accepted ones), or ``spec`` itself when it already is one."""
    if isinstance(spec, cls):
        return spec
    assert isinstance(spec, Mapping)
    known = sorted(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = set(spec) - set(known)
    if unknown:
        raise ValueError(f"unknown {what} level keys {sorted(unknown)}; accepted: {known}")
    fields: dict[str, Any] = {k: tuple(v) if k == "operators" else v for k, v in spec.items()}
    return cls(**fields)


class ProceduralTask(Task[TaskState]):
    """A task whose instances are generated: ``task_index`` in ``[0, size)`` of a seeded set.

    Args:
        split: one of :attr:`split_seeds` (``"test"``: the fixed evaluation set, or ``"train"``).
        seed: another set than the split's (overrides the split's seed).
        size: how many instances the set has (default: the split's size).
    """

    split_seeds: ClassVar[Mapping[str, int]] = {}
    """The default seed of each split."""

    split_sizes: ClassVar[Mapping[str, int]] = {}
    """The default size of each split."""

    def __init__(self, split: str = "test", seed: int | None = None, size: int | None = None) -> None:
        if split not in self.split_seeds:
            raise ValueError(f"split must be one of {sorted(self.split_seeds)}, got {split!r}")
        self.split = split
        self.seed = self.split_seeds[split] if seed is None else int(seed)
        self.size = self.split_sizes[split] if size is None else int(size)
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {size}")

    @property
    def num_tasks(self) -> int:
        return self.size
