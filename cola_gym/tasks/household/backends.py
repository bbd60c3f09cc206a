"""Engines that play a :class:`~cola_gym.tasks.household.world.Game`: this package's, or ALFWorld's.

A backend answers commands with ``(world, text, admissible commands, won)``, where ``world``
is an immutable value that identifies the game's state, so episodes stay snapshot-able: the
native engine's world is its :class:`~cola_gym.tasks.household.world.WorldState`; ALFWorld's
TextWorld engine is a live process, so its world is the command history, which the backend
replays when an episode is restored to another branch.

Backends are listed by name as ``"module:Class"`` strings (:data:`BACKENDS`), so this module
imports no backend and no backend imports back a module that lists it.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from cola_gym.tasks.household import engine
from cola_gym.tasks.household.world import Game, GameFile

BACKENDS = {
    "native": "cola_gym.tasks.household.backends:NativeBackend",
    "alfworld": "cola_gym.tasks.household.alfworld:AlfworldBackend",
}
"""Every backend by name, as ``"module:Class"``."""


@dataclass(frozen=True)
class Reply:
    """An engine's answer: the new world, its text, the admissible commands, ``won``."""

    world: Any
    text: str
    admissible: tuple[str, ...]
    won: bool


class Backend(ABC):
    """Plays games: :meth:`start` gives the intro, :meth:`play` answers one command."""

    @abstractmethod
    def start(self, game: Game | GameFile) -> Reply:
        """The game's first observation (ALFWorld's intro)."""

    @abstractmethod
    def play(self, game: Game | GameFile, world: Any, command: str) -> Reply:
        """Answers ``command`` in ``world``."""


class NativeBackend(Backend):
    """This package's engine (:mod:`cola_gym.tasks.household.engine`): microseconds per command."""

    def start(self, game: Game | GameFile) -> Reply:
        if not isinstance(game, Game):
            raise ValueError(f"the native engine plays generated games; {game!r} needs backend='alfworld'")
        return Reply(game.start, engine.intro(game), tuple(engine.admissible_commands(game, game.start)), False)

    def play(self, game: Game | GameFile, world: Any, command: str) -> Reply:
        assert isinstance(game, Game)
        result = engine.step(game, world, command)
        return Reply(result.state, result.feedback, tuple(engine.admissible_commands(game, result.state)), result.won)


def make_backend(name: str) -> Backend:
    """The backend called ``name`` (a key of :data:`BACKENDS`)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {tuple(BACKENDS)}, got {name!r}")
    module, _, class_name = BACKENDS[name].partition(":")
    backend: Backend = getattr(importlib.import_module(module), class_name)()
    return backend
