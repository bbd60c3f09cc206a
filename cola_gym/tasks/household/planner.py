"""The expert: shortest plans from full knowledge of the world, deterministic.

Every ALFWorld task is "bring an object of class A (after heating, cooling or cleaning it) to
a receptacle of class B" (twice for ``pick_two_obj_and_place``), or "hold an A where a lamp
stands and turn the lamp on". A plan is then fixed by which objects, which destination and
which appliance it uses: the planner writes the plan of every such choice, playing it
through the engine (a ``go to`` only when not already there, an ``open`` only when closed),
and keeps the shortest, ties broken by the commands' alphabetical order. Unlike ALFWorld's
hand-coded expert it never explores or falls back on random commands; unlike its Fast
Downward expert it costs microseconds. The tests check it against breadth-first search.

It plans from any state: holding an object it needs, it goes on with it; holding one it does
not, it puts it down first. Given ``known`` receptacles it plans with the objects it has seen
there only (the searching expert, :mod:`~cola_gym.tasks.household.searcher`, explores for the rest).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterator

from cola_gym.tasks.household.engine import is_won, step
from cola_gym.tasks.household.vocabulary import CLEAN_AT, COOL_AT, HEAT_AT
from cola_gym.tasks.household.world import Game, WorldState, class_of

_PROCESS = {
    "pick_clean_then_place_in_recep": ("clean", CLEAN_AT),
    "pick_heat_then_place_in_recep": ("heat", HEAT_AT),
    "pick_cool_then_place_in_recep": ("cool", COOL_AT),
}


_DONE = {"heat": "hot", "cool": "cool", "clean": "clean"}
"""The world state's record of each processing verb."""


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
        if receptacle not in self.game.house.together(self.state.location):
            self.do(f"go to {receptacle}")
        if receptacle in self.game.rules.openable and receptacle not in self.state.opened:
            self.do(f"open {receptacle}")

    def fetch(self, obj: str) -> None:
        if self.state.holding == obj:
            return
        self.drop()
        where = self.state.place_of(self.game.house, obj)
        assert where is not None
        self.go(where)
        self.do(f"take {obj} from {where}")

    def drop(self) -> None:
        """Puts down what the hand holds: where the agent stands, else at the first receptacle that takes it."""
        held = self.state.holding
        if held is None:
            return
        here = self.state.location
        for receptacle in ([here] if here else []) + [r for r in self.game.house.receptacles if r != here]:
            here_all = self.game.house.together(here)
            result = step(self.game, self.state, f"go to {receptacle}") if receptacle not in here_all else None
            after = self.state if result is None else result.state
            if receptacle in self.game.rules.openable and receptacle not in after.opened:
                continue  # a closed receptacle takes nothing; try the next one
            if step(self.game, after, f"move {held} to {receptacle}").admissible:
                self.go(receptacle)
                self.do(f"move {held} to {receptacle}")
                return
        raise _Infeasible(f"put down {held}")

    def deliver(self, obj: str, receptacle: str) -> None:
        self.go(receptacle)
        self.do(f"move {obj} to {receptacle}")


PlanWriter = Callable[[_Script], None]


class _Infeasible(Exception):
    """A choice whose plan hits a command that is not admissible."""


def expert_plan(game: Game, state: WorldState | None = None, known: Collection[str] | None = None) -> list[str]:
    """The shortest command sequence that wins ``game`` from ``state`` (default: the start).

    Args:
        game: the game.
        state: where to plan from (the agent may hold an object).
        known: receptacles whose contents the agent has seen: only the objects in them (and
            the one in its hand) are planned with (``None``: every object, the oracle).

    Raises:
        ValueError: the game cannot be won (with the known objects).
    """
    state = game.start if state is None else state
    best: list[str] | None = None
    for choice in _choices(game, state, known):
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


def _choices(game: Game, state: WorldState, known: Collection[str] | None = None) -> Iterator[PlanWriter]:
    """One plan writer per choice of objects, destination and appliance (among the known objects)."""
    house, goal = game.house, game.goal
    if is_won(game, state):
        yield lambda script: None
        return

    def visible(obj: str) -> bool:
        return known is None or state.holding == obj or state.place_of(house, obj) in known

    targets = [o for o in house.objects if class_of(o) == goal.obj and visible(o)]
    if goal.task_type == "look_at_obj_in_light":
        lamps = [o for o in house.objects if class_of(o) == goal.toggle and visible(o)]
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
        if stand not in script.game.house.together(script.state.location):
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
        if verb and obj not in getattr(script.state, _DONE[verb]):  # not heated (cooled, cleaned) yet
            if appliance not in script.game.house.together(script.state.location):
                script.do(f"go to {appliance}")
            script.do(f"{verb} {obj} with {appliance}")
        script.deliver(obj, destination)

    return write
