"""Engines that play a :class:`~cola_gym.household.world.Game`: this package's, or ALFWorld's.

A backend answers commands with ``(world, text, admissible commands, won)``, where ``world``
is an immutable value that identifies the game's state, so episodes stay snapshot-able: the
native engine's world is its :class:`~cola_gym.household.world.WorldState`; ALFWorld's
TextWorld engine is a live process, so its world is the command history, which the backend
replays when an episode is restored to another branch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from cola_gym.household import engine
from cola_gym.household.world import Game, GameFile

BACKENDS = ("native", "alfworld")


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
    """This package's engine (:mod:`cola_gym.household.engine`): microseconds per command."""

    def start(self, game: Game | GameFile) -> Reply:
        if not isinstance(game, Game):
            raise ValueError(f"the native engine plays generated games; {game!r} needs backend='alfworld'")
        return Reply(game.start, engine.intro(game), tuple(engine.admissible_commands(game, game.start)), False)

    def play(self, game: Game | GameFile, world: Any, command: str) -> Reply:
        assert isinstance(game, Game)
        result = engine.step(game, world, command)
        return Reply(result.state, result.feedback, tuple(engine.admissible_commands(game, result.state)), result.won)


def make_backend(name: str) -> Backend:
    """The backend called ``name`` (``"native"`` or ``"alfworld"``)."""
    if name == "native":
        return NativeBackend()
    if name == "alfworld":
        from cola_gym.household.alfworld import AlfworldBackend

        return AlfworldBackend()
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
