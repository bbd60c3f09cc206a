"""The expert: shortest plans from full knowledge of the world, deterministic.

Every ALFWorld task is "bring an object of class A (after heating, cooling or cleaning it) to
a receptacle of class B" (twice for ``pick_two_obj_and_place``), or "hold an A where a lamp
stands and turn the lamp on". A plan is then fixed by which objects, which destination and
which appliance it uses: the planner writes the plan of every such choice, playing it
through the engine (a ``go to`` only when not already there, an ``open`` only when closed),
and keeps the shortest, ties broken by the commands' alphabetical order. Unlike ALFWorld's
hand-coded expert it never explores or falls back on random commands; unlike its Fast
Downward expert it costs microseconds. The tests check it against breadth-first search.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from cola_gym.tasks.household.engine import is_won, step
from cola_gym.tasks.household.vocabulary import CLEAN_AT, COOL_AT, HEAT_AT
from cola_gym.tasks.household.world import Game, WorldState, class_of, is_openable

_PROCESS = {
    "pick_clean_then_place_in_recep": ("clean", CLEAN_AT),
    "pick_heat_then_place_in_recep": ("heat", HEAT_AT),
    "pick_cool_then_place_in_recep": ("cool", COOL_AT),
}


class _Script:
    """Writes commands while playing them, so each step sees the state the last one left."""

    def __init__(self, game: Game, state: WorldState) -> None:
        self.game, self.state = game, state
        self.commands: list[str] = []

    def do(self, command: str) -> None:
        result = step(self.game, self.state, command)
        if not result.admissible:
            raise _Infeasible(command)
        self.state = result.state
        self.commands.append(command)

    def go(self, receptacle: str) -> None:
        if self.state.location != receptacle:
            self.do(f"go to {receptacle}")
        if is_openable(receptacle) and receptacle not in self.state.opened:
            self.do(f"open {receptacle}")

    def fetch(self, obj: str) -> None:
        where = self.state.place_of(self.game.house, obj)
        assert where is not None
        self.go(where)
        self.do(f"take {obj} from {where}")

    def deliver(self, obj: str, receptacle: str) -> None:
        self.go(receptacle)
        self.do(f"move {obj} to {receptacle}")


PlanWriter = Callable[[_Script], None]


class _Infeasible(Exception):
    """A choice whose plan hits a command that is not admissible."""


def expert_plan(game: Game, state: WorldState | None = None) -> list[str]:
    """The shortest command sequence that wins ``game`` from ``state`` (default: the start).

    Raises:
        ValueError: the agent holds an object (plans start with empty hands), or the game
            cannot be won.
    """
    state = game.start if state is None else state
    if state.holding is not None:
        raise ValueError("the expert plans from states with empty hands")
    best: list[str] | None = None
    for choice in _choices(game, state):
        script = _Script(game, state)
        try:
            choice(script)
        except _Infeasible:
            continue
        if not is_won(game, script.state):
            continue
        if best is None or (len(script.commands), script.commands) < (len(best), best):
            best = script.commands
    if best is None:
        raise ValueError(f"game {game.name or game.goal.sentence!r} cannot be won")
    return best


def _choices(game: Game, state: WorldState) -> Iterator[PlanWriter]:
    """One plan writer per choice of objects, destination and appliance."""
    house, goal = game.house, game.goal
    if is_won(game, state):
        yield lambda script: None
        return
    targets = [o for o in house.objects if class_of(o) == goal.obj]
    if goal.task_type == "look_at_obj_in_light":
        lamps = [o for o in house.objects if class_of(o) == goal.toggle]
        for obj, lamp in itertools.product(targets, lamps):
            yield _look_plan(obj, lamp)
        return
    destinations = [r for r in house.receptacles if class_of(r) == goal.recep]
    if goal.task_type == "pick_two_obj_and_place":
        for first, second in itertools.permutations(targets, 2):
            for destination in destinations:
                yield _two_plan(first, second, destination)
        return
    verb, appliance_class = _PROCESS.get(goal.task_type, ("", ""))
    appliances = [r for r in house.receptacles if class_of(r) == appliance_class] or [""]
    for obj, destination, appliance in itertools.product(targets, destinations, appliances):
        yield _place_plan(obj, destination, verb, appliance)


def _look_plan(obj: str, lamp: str) -> PlanWriter:
    def write(script: _Script) -> None:
        script.fetch(obj)
        stand = script.state.place_of(script.game.house, lamp)
        assert stand is not None
        if script.state.location != stand:
            script.do(f"go to {stand}")
        script.do(f"use {lamp}")

    return write


def _two_plan(first: str, second: str, destination: str) -> PlanWriter:
    def write(script: _Script) -> None:
        for obj in (first, second):
            if script.state.place_of(script.game.house, obj) != destination:
                script.fetch(obj)
                script.deliver(obj, destination)

    return write


def _place_plan(obj: str, destination: str, verb: str, appliance: str) -> PlanWriter:
    def write(script: _Script) -> None:
        script.fetch(obj)
        if verb:
            if script.state.location != appliance:
                script.do(f"go to {appliance}")
            script.do(f"{verb} {obj} with {appliance}")
        script.deliver(obj, destination)

    return write
