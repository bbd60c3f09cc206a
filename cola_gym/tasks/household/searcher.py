"""The searching expert: plays as an agent must, not knowing where the objects are.

The oracle expert (:func:`~cola_gym.tasks.household.planner.expert_plan`) walks straight to
objects it has never seen. A policy cloned from it learns that its first ``go to`` is a guess
and has never seen a recovery. The searching expert knows only what its game so far has shown:
the room's receptacles (the intro lists them) and the contents of every receptacle it has
stood at (opened, if it opens). Each command it

1. plans with the objects it has seen (:func:`expert_plan` with ``known=``), and plays the
   plan's first command when there is one;
2. else explores: goes to the next unseen receptacle that can hold what the goal needs, in
   the order a household agent would look (counters and tables before cabinets and
   drawers, receptacles of a class in their numbers' order), and opens it if it is closed.

It replans from any state (holding an object or not, after any commands, valid or not), so
it can label the states another policy reaches (:func:`expert_labels`, DAgger).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from cola_gym.tasks.household.engine import admissible_commands, is_won, step
from cola_gym.tasks.household.planner import expert_plan
from cola_gym.tasks.household.vocabulary import LAMP_STANDS, LAMPS, can_hold
from cola_gym.tasks.household.world import Game, WorldState, class_of

LOOKING_ORDER = (
    "countertop",
    "diningtable",
    "coffeetable",
    "sidetable",
    "desk",
    "dresser",
    "shelf",
    "tvstand",
    "sofa",
    "armchair",
    "bed",
    "stoveburner",
    "sinkbasin",
    "toilet",
    "bathtubbasin",
    "towelholder",
    "fridge",
    "microwave",
    "cabinet",
    "drawer",
    "safe",
    "garbagecan",
    "laundryhamper",
)
"""Where to look first: open surfaces, then appliances, then closed storage, then bins."""


def seen_after(game: Game, state: WorldState, seen: frozenset[str]) -> frozenset[str]:
    """``seen`` plus the receptacles the agent stands at whose contents are in view."""
    in_view = {r for r in game.house.together(state.location) if r not in game.rules.openable or r in state.opened}
    return seen | in_view if in_view else seen


def replay(game: Game, commands: Iterable[str]) -> tuple[WorldState, frozenset[str]]:
    """The world after ``commands`` from the game's start, and the receptacles seen on the way."""
    state, seen = game.start, frozenset[str]()
    for command in commands:
        state = step(game, state, command).state
        seen = seen_after(game, state, seen)
    return state, seen


def searching_command(game: Game, state: WorldState, seen: frozenset[str]) -> str:
    """The searching expert's next command from ``state``, knowing the contents of ``seen``.

    Raises:
        ValueError: the game is won already, or nothing is left to explore and it cannot be won.
    """
    if is_won(game, state):
        raise ValueError("the game is won: there is no next command")
    try:
        plan = expert_plan(game, state, known=seen)
    except ValueError:
        plan = []
    if plan:
        return plan[0]
    for here in game.house.together(state.location):
        if here in game.rules.openable and here not in state.opened:
            return f"open {here}"
    unseen = _unseen(game, state, seen)
    if unseen:
        return f"go to {unseen[0]}"
    raise ValueError(f"game {game.name or game.goal.sentence!r} cannot be won: every receptacle has been seen")


def searching_plan(game: Game, limit: int = 200) -> list[str]:
    """The searching expert's whole game from the start, up to the winning command."""
    state, seen = game.start, frozenset[str]()
    commands: list[str] = []
    while not is_won(game, state):
        if len(commands) >= limit:
            raise ValueError(f"the searching expert did not win {game.name!r} in {limit} commands")
        command = searching_command(game, state, seen)
        commands.append(command)
        state = step(game, state, command).state
        seen = seen_after(game, state, seen)
    return commands


def slipping_plan(game: Game, rng: np.random.Generator, slip_rate: float = 0.25, limit: int = 50) -> list[str]:
    """The searching expert's game with slips: before each command, with probability
    ``slip_rate``, a random admissible command other than the expert's; the expert then
    replans from wherever the slip took it (a recovering agent's game). Ends at the win or
    after ``limit`` commands (a game lost to its slips)."""
    if not 0 <= slip_rate < 1:
        raise ValueError(f"slip_rate must be in [0, 1), got {slip_rate!r}")
    state, seen = game.start, frozenset[str]()
    commands: list[str] = []
    while not is_won(game, state) and len(commands) < limit:
        command = searching_command(game, state, seen)
        if rng.random() < slip_rate:
            others = [c for c in admissible_commands(game, state) if c != command]
            if others:
                command = others[int(rng.integers(len(others)))]
        commands.append(command)
        state = step(game, state, command).state
        seen = seen_after(game, state, seen)
    return commands


def expert_labels(game: Game, commands: Sequence[str]) -> list[str | None]:
    """DAgger's labels: for each prefix of ``commands`` (another policy's play, valid or not),
    the searching expert's next command (``None`` where the game is already won)."""
    labels: list[str | None] = []
    state, seen = game.start, frozenset[str]()
    for command in [*commands, None]:
        labels.append(None if is_won(game, state) else searching_command(game, state, seen))
        if command is not None:
            state = step(game, state, command).state
            seen = seen_after(game, state, seen)
    return labels


def _unseen(game: Game, state: WorldState, seen: frozenset[str]) -> list[str]:
    """Receptacles not yet seen that could hold an object the goal needs, in looking order."""
    goal = game.goal
    wanted = [goal.obj] + ([goal.toggle] if goal.toggle else [])
    rank = {cls: i for i, cls in enumerate(LOOKING_ORDER)}

    def useful(receptacle: str) -> bool:
        cls = class_of(receptacle)
        return any(can_hold(cls, w) or _lamp_stand(cls, w) for w in wanted)

    here = game.house.together(state.location)
    candidates = [r for r in game.house.receptacles if r not in seen and r not in here and useful(r)]
    return sorted(candidates, key=lambda r: (rank.get(class_of(r), len(rank)), int(r.rsplit(" ", 1)[1])))


def _lamp_stand(receptacle_class: str, object_class: str) -> bool:
    return object_class in LAMPS and receptacle_class in LAMP_STANDS
