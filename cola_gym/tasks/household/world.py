"""A household game as immutable values: the room, the goal, and the world's changing state.

A :class:`Household` is a room: numbered receptacles (one per location, so ``go to`` always
arrives) and numbered objects. A :class:`Game` adds a :class:`Goal` and the initial
:class:`WorldState`. World states are small frozen values, so a game can be snapshotted,
branched by a search and replayed for free; :mod:`cola_gym.tasks.household.engine` maps a state and
a command to the next state and the text ALFWorld would print.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from cola_gym.tasks.household.vocabulary import (
    LAMPS,
    OBJECT_CLASSES,
    OPENABLE,
    RECEPTACLE_OBJECTS,
    TASK_TYPES,
    alfred_id_prefix,
)


@dataclass(frozen=True)
class Household:
    """A room: receptacle names (``"fridge 1"``) and object names (``"apple 2"``), each
    ``"<class> <number>"``, in the order the engine lists them.

    Every receptacle has a location of its own, except the groups in ``colocated`` (ALFWorld's
    own rooms have a few): standing at one of a group, the agent reaches all of them, and
    ``go to`` another of the group answers "Nothing happens.", as in ALFWorld.
    """

    scene: str
    layout: int
    receptacles: tuple[str, ...]
    objects: tuple[str, ...]
    colocated: tuple[tuple[str, ...], ...] = ()

    @cached_property
    def object_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.objects)}

    @cached_property
    def _places(self) -> dict[str, tuple[str, ...]]:
        places: dict[str, tuple[str, ...]] = {r: (r,) for r in self.receptacles}
        for group in self.colocated:
            ordered = tuple(sorted(group, key=listing_order))
            places.update(dict.fromkeys(group, ordered))
        return places

    def together(self, receptacle: str | None) -> tuple[str, ...]:
        """The receptacles at ``receptacle``'s location (itself included), in listing order;
        ``()`` for ``None`` (the middle of the room)."""
        return () if receptacle is None else self._places[receptacle]

    def __post_init__(self) -> None:
        names = (*self.receptacles, *self.objects)
        if len(set(names)) != len(names):
            raise ValueError(f"household names must be unique, got {names}")
        grouped = [r for group in self.colocated for r in group]
        if len(set(grouped)) != len(grouped) or not set(grouped) <= set(self.receptacles):
            raise ValueError(f"colocated must be disjoint groups of the room's receptacles, got {self.colocated}")
        if any(len(group) < 2 for group in self.colocated):
            raise ValueError(f"a colocated group has two receptacles or more, got {self.colocated}")


def class_of(name: str) -> str:
    """``"sinkbasin 1"`` -> ``"sinkbasin"``."""
    return name.rsplit(" ", 1)[0]


def listing_order(name: str) -> tuple[str, int]:
    """ALFWorld's order of names in a list: by class id, higher numbers first (its ids sort
    that way: ``a drawer 2, a drawer 1``)."""
    cls, number = name.rsplit(" ", 1)
    return f"{alfred_id_prefix(cls)}_bar_", -int(number)


@dataclass(frozen=True)
class WorldState:
    """What changes during a game.

    Attributes:
        location: the receptacle the agent stands at, ``None`` in the middle of the room.
        holding: the object in the agent's hand, or ``None``.
        places: for each of the household's objects, the receptacle it is in (``None`` while held).
        opened: receptacles now open.
        hot, cool, clean: objects heated, cooled, cleaned (heating undoes cooling and back).
        lit: lamps turned on.
        sliced: objects sliced (``slice apple 1 with knife 1``; the object stays one object).
    """

    location: str | None
    holding: str | None
    places: tuple[str | None, ...]
    opened: frozenset[str] = frozenset()
    hot: frozenset[str] = frozenset()
    cool: frozenset[str] = frozenset()
    clean: frozenset[str] = frozenset()
    lit: frozenset[str] = frozenset()
    sliced: frozenset[str] = frozenset()

    def place_of(self, house: Household, obj: str) -> str | None:
        return self.places[house.object_index[obj]]

    def contents(self, house: Household, receptacle: str) -> tuple[str, ...]:
        """Objects in ``receptacle``, in ALFWorld's listing order."""
        inside = [o for o, where in zip(house.objects, self.places, strict=True) if where == receptacle]
        return tuple(sorted(inside, key=listing_order))

    def moved(self, house: Household, obj: str, to: str | None) -> WorldState:
        """This state with ``obj`` put in ``to`` (``None``: into the agent's hand)."""
        places = list(self.places)
        places[house.object_index[obj]] = to
        return replace(self, places=tuple(places), holding=obj if to is None else None)


@dataclass(frozen=True)
class Goal:
    """A task: its ALFWorld type, the classes it names and its sentence.

    Attributes:
        task_type: one of :data:`~cola_gym.tasks.household.vocabulary.TASK_TYPES`.
        obj: the object class to handle (``"apple"``).
        recep: the receptacle class to put it in (``None`` for ``look_at_obj_in_light``).
        toggle: the lamp class (only ``look_at_obj_in_light``).
        sentence: the goal as ALFWorld states it (``"put a hot apple in countertop"``).
    """

    task_type: str
    obj: str
    recep: str | None
    toggle: str | None
    sentence: str

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"task_type must be one of {TASK_TYPES}, got {self.task_type!r}")
        if (self.toggle is None) == (self.task_type == "look_at_obj_in_light"):
            raise ValueError("a lamp class is given exactly for look_at_obj_in_light")
        if (self.recep is None) != (self.task_type == "look_at_obj_in_light"):
            raise ValueError("a receptacle class is given exactly for the placing task types")


@dataclass(frozen=True)
class Rules:
    """What a room's things can do: ALFRED's facts about them, as a game file states them.

    Attributes:
        openable: receptacles with a door (closed unless the game opens them).
        pickupable: objects that can be taken.
        toggleable: objects that are turned on where they stand (lamps: ``use desklamp 1``).
        heatable, coolable, cleanable, sliceable: objects that can be heated (at a microwave),
            cooled (at a fridge), cleaned (at a sink basin), sliced (with a knife).
        can_contain: ``(receptacle class, object class)`` pairs a ``move`` may put together.
        receptacle_objects: objects ALFRED counts as receptacles (a mug, a bowl): nothing goes
            into them in ALFWorld, but ``examine`` says so ("This is a normal mug 1. In it, you
            see nothing.").
    """

    openable: frozenset[str]
    pickupable: frozenset[str]
    toggleable: frozenset[str]
    heatable: frozenset[str]
    coolable: frozenset[str]
    cleanable: frozenset[str]
    sliceable: frozenset[str]
    can_contain: frozenset[tuple[str, str]]
    receptacle_objects: frozenset[str] = frozenset()

    @classmethod
    def of_classes(cls, house: Household) -> Rules:
        """The rules of ALFRED's tables for the classes of the room's things (what every
        generated game plays by)."""
        objects = house.objects
        properties = {o: OBJECT_CLASSES.get(class_of(o)) for o in objects}

        def having(flag: str) -> frozenset[str]:
            return frozenset(o for o, p in properties.items() if p is not None and getattr(p, flag))

        lamps = frozenset(o for o in objects if class_of(o) in LAMPS)
        pairs = {(class_of(r), class_of(o)) for r in house.receptacles for o in objects}
        return cls(
            openable=frozenset(r for r in house.receptacles if class_of(r) in OPENABLE),
            pickupable=frozenset(objects) - lamps,
            toggleable=lamps,
            heatable=having("heatable"),
            coolable=having("coolable"),
            cleanable=having("cleanable"),
            sliceable=having("sliceable"),
            can_contain=frozenset((r, o) for r, o in pairs if o in RECEPTACLE_OBJECTS.get(r, frozenset())),
        )


@dataclass(frozen=True)
class Game:
    """One household game: the room, its goal and its initial state.

    Attributes:
        split: ``"train"``, ``"valid_seen"``, ``"valid_unseen"`` or ``"custom"``.
        index: the game's number in its split (-1 for a custom game).
        custom_rules: the room's rules when they are not ALFRED's tables for its classes (a
            game file that says otherwise); ``None``: :meth:`Rules.of_classes`.
    """

    house: Household
    goal: Goal
    start: WorldState
    split: str = "custom"
    index: int = -1
    name: str = field(default="", compare=False)
    custom_rules: Rules | None = None

    @cached_property
    def rules(self) -> Rules:
        """What the room's things can do."""
        return self.custom_rules or Rules.of_classes(self.house)

    def __post_init__(self) -> None:
        house, start = self.house, self.start
        if len(start.places) != len(house.objects):
            raise ValueError("the initial state must place every object")
        unknown = {p for p in start.places if p is not None} - set(house.receptacles)
        if unknown:
            raise ValueError(f"objects placed in receptacles the room lacks: {sorted(unknown)}")
        if start.holding is not None or None in start.places:
            raise ValueError("a game starts with empty hands")
        for obj, where in zip(house.objects, start.places, strict=True):
            if obj in self.rules.toggleable and where is None:
                raise ValueError(f"{obj} must stand on a receptacle")


@dataclass(frozen=True)
class GameFile:
    """A real ALFWorld game file (a ``*.tw-pddl``, ALFWorld's ``.../trial_.../game.tw-pddl``)."""

    path: str

    @property
    def name(self) -> str:
        return self.path

    @cached_property
    def task_type(self) -> str:
        """The game's task type, read from the game itself: its ``traj_data.json`` (ALFRED's record,
        beside the file) when there is one, else its PDDL goal; ``"unknown"`` when neither says."""
        path = Path(self.path)
        record = path.parent / "traj_data.json"
        if record.is_file():
            try:
                found = json.loads(record.read_text()).get("task_type")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                found = None
            if found in TASK_TYPES:
                return str(found)
        try:
            problem = json.loads(path.read_text()).get("pddl_problem", "")
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return "unknown"
        return task_type_of_goal(str(problem))


def task_type_of_goal(pddl_problem: str) -> str:
    """The task type of an ALFWorld PDDL problem, from its ``(:goal ...)`` (ALFWorld's six
    goal templates differ in one predicate or in a second object); ``"unknown"`` without one."""
    start = pddl_problem.find("(:goal")
    if start < 0:
        return "unknown"
    goal = pddl_problem[start:]
    for predicate, task_type in _GOAL_PREDICATES:
        if predicate in goal:
            return task_type
    if "?o2" in goal:
        return "pick_two_obj_and_place"
    if "inReceptacle" in goal:
        return "pick_and_place_simple"
    return "unknown"


_GOAL_PREDICATES = (
    ("isToggled", "look_at_obj_in_light"),
    ("isClean", "pick_clean_then_place_in_recep"),
    ("isHot", "pick_heat_then_place_in_recep"),
    ("isCool", "pick_cool_then_place_in_recep"),
)
