"""ALFWorld's game files as native games: a ``*.tw-pddl`` file read into a :class:`Game`.

A game file (ALFWorld's ``.../trial_.../game.tw-pddl``) is a JSON object whose ``pddl_problem``
is an ALFRED PDDL problem: the room's receptacles and objects as PDDL ids, facts about them
(types, locations, which receptacle holds what, openable, pickupable, heatable, ...,
``canContain`` pairs of types) and the goal. :func:`native_game` reads it into the native
engine's values: names as ALFWorld's demangler gives them (``apple 2``, ``sinkbasin 1``), the
task type and the classes from the PDDL goal, the sentence from the game's grammar, and the
facts as the game's :class:`~cola_gym.tasks.household.world.Rules`. Reading needs no ALFWorld
install.

What the native engine cannot represent is refused with :class:`UnsupportedGame`, whose message
names it; such a game plays on ALFWorld's engine (``backend="alfworld"``). Refused today: an
agent that starts at a receptacle, objects inside objects, objects on the floor or held at the
start, lamps on at the start, and facts the engine has no rule for. Receptacles that share a
location are played as ALFWorld plays them (``go to`` between them: "Nothing happens.").
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from cola_gym.tasks.household.world import (
    Game,
    GameFile,
    Goal,
    Household,
    Rules,
    WorldState,
    listing_order,
    task_type_of_goal,
)

SExpression = str | list["SExpression"]

IGNORED_FACTS = frozenset(
    {"checked", "examined", "wasinreceptacle", "moveable", "full", "isreceptacleobjectfull", "objectatlocation", "="}
)
"""Facts that change nothing the native engine plays (ALFWorld's domain reads them in no
precondition of an admissible command, or they repeat what other facts say)."""

_STATE_FACTS = {"opened": "opened", "ishot": "hot", "iscool": "cool", "isclean": "clean", "issliced": "sliced"}
_PROPERTY_FACTS = {
    "pickupable": "pickupable",
    "toggleable": "toggleable",
    "heatable": "heatable",
    "coolable": "coolable",
    "cleanable": "cleanable",
    "sliceable": "sliceable",
    "isreceptacleobject": "receptacle_objects",
}
_SENTENCE = re.compile(r"Your task is to: (.+?)\.")


class UnsupportedGame(ValueError):
    """A game file the native engine cannot play as ALFWorld does; the message names what."""


def parse_sexpression(text: str) -> list[SExpression]:
    """The top-level s-expressions of PDDL ``text`` (``;`` comments dropped), atoms as strings.

    Raises:
        ValueError: unbalanced parentheses.
    """
    text = re.sub(r";[^\n]*", "", text)
    stack: list[list[SExpression]] = [[]]
    for token in re.findall(r"\(|\)|[^\s()]+", text):
        if token == "(":
            stack.append([])
        elif token == ")":
            if len(stack) == 1:
                raise ValueError("unbalanced PDDL: a ')' closes nothing")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(token)
    if len(stack) != 1:
        raise ValueError(f"unbalanced PDDL: {len(stack) - 1} '(' never closed")
    return stack[0]


def demangled_names(ids: Iterable[str]) -> dict[str, str]:
    """Names ALFWorld's demangler gives (lower-cased) PDDL ids (``apple_bar_...`` -> ``apple 2``): per name
    (the id up to ``_bar_``, plus ``basin`` when the id contains it), the sorted ids get numbers
    from the highest down. Ids without ``_bar_`` (types, ``agent1``) are left out."""
    ordered = sorted(ids)

    def stem(pddl_id: str) -> str:
        name = pddl_id.split("_bar_", 1)[0]
        return name + "basin" if "basin" in pddl_id else name

    mangled = [i for i in ordered if "_bar_" in i]
    remaining = Counter(stem(i) for i in mangled)
    names = {}
    for pddl_id in mangled:
        name = stem(pddl_id)
        names[pddl_id] = f"{name} {remaining[name]}"
        remaining[name] -= 1
    return names


def _section(problem: list[SExpression], key: str) -> list[SExpression]:
    for part in problem:
        if isinstance(part, list) and part and part[0] == key:
            return part[1:]
    return []


def _typed_objects(entries: list[SExpression]) -> dict[str, str]:
    """``a b - type c - other`` -> ``{a: type, b: type, c: other}``."""
    typed: dict[str, str] = {}
    pending: list[str] = []
    tokens = iter(entries)
    for token in tokens:
        if token == "-":
            kind = next(tokens, None)
            if not isinstance(kind, str):
                raise UnsupportedGame("a malformed :objects list (a '-' without a type)")
            typed.update(dict.fromkeys(pending, kind))
            pending = []
        elif isinstance(token, str):
            pending.append(token)
    typed.update(dict.fromkeys(pending, "object"))
    return typed


def _type_class(pddl_type: str) -> str:
    return pddl_type.removesuffix("type")


def _goal_classes(goal: SExpression) -> tuple[str | None, str | None, str | None]:
    """``(object class, receptacle class, lamp class)`` named by ALFWorld's goal: the lamp is the
    ``toggleable`` variable of ``look_at_obj_in_light``."""
    typed: list[tuple[str, str, str]] = []
    toggled: set[str] = set()

    def walk(node: SExpression) -> None:
        if not isinstance(node, list) or not node:
            return
        if node[0] in ("objecttype", "receptacletype") and len(node) == 3 and all(isinstance(n, str) for n in node):
            typed.append((str(node[0]), str(node[1]), str(node[2])))
        if node[0] == "toggleable" and len(node) == 2 and isinstance(node[1], str):
            toggled.add(node[1])
        for child in node:
            walk(child)

    walk(goal)
    objects = {_type_class(t) for kind, var, t in typed if kind == "objecttype" and var not in toggled}
    lamps = {_type_class(t) for kind, var, t in typed if kind == "objecttype" and var in toggled}
    receptacles = {_type_class(t) for kind, var, t in typed if kind == "receptacletype"}
    for what, found in (("object", objects), ("receptacle", receptacles), ("lamp", lamps)):
        if len(found) > 1:
            raise UnsupportedGame(f"a goal that names more than one {what} class: {sorted(found)}")
    return (next(iter(objects), None), next(iter(receptacles), None), next(iter(lamps), None))


def native_game(
    data: Mapping[str, Any], *, name: str = "", split: str = "custom", index: int = -1, scene: str = ""
) -> Game:
    """The native game of an ALFWorld game file's JSON object (``pddl_problem``, ``grammar``).

    Raises:
        UnsupportedGame: the game has something the native engine cannot represent (the
            message names it; play it with ``backend="alfworld"``).
        ValueError: the object is not a game file (no PDDL problem, unbalanced PDDL).
    """
    if not isinstance(data.get("pddl_problem"), str):
        raise ValueError("not an ALFWorld game file: no 'pddl_problem' text")
    parsed = parse_sexpression(data["pddl_problem"].lower())  # PDDL names are case-insensitive
    if not parsed or not isinstance(parsed[0], list) or parsed[0][:1] != ["define"]:
        raise ValueError("not an ALFRED PDDL problem: no (define ...)")
    problem = parsed[0]
    typed = _typed_objects(_section(problem, ":objects"))
    names = demangled_names(typed)
    facts = [f for f in _section(problem, ":init") if isinstance(f, list) and f and isinstance(f[0], str)]
    goal = _section(problem, ":goal")

    def named(pddl_id: SExpression, what: str) -> str:
        if not isinstance(pddl_id, str) or pddl_id not in names:
            raise UnsupportedGame(f"a {what} without an ALFRED id ({pddl_id!r})")
        return names[pddl_id]

    receptacle_ids = [i for i, t in typed.items() if t == "receptacle"]
    object_ids = [i for i, t in typed.items() if t == "object"]
    types: dict[str, str] = {}
    locations: dict[str, str] = {}
    places: dict[str, list[str]] = {}
    agent_at: str | None = None
    state_sets: dict[str, set[str]] = {key: set() for key in _STATE_FACTS.values()}
    properties: dict[str, set[str]] = {key: set() for key in _PROPERTY_FACTS.values()}
    openable: set[str] = set()
    can_contain: set[tuple[str, str]] = set()
    for fact in facts:
        head, args = str(fact[0]), fact[1:]
        if head in ("receptacletype", "objecttype"):
            types[str(args[0])] = _type_class(str(args[1]))
        elif head == "receptacleatlocation":
            locations[str(args[0])] = str(args[1])
        elif head == "inreceptacle":
            places.setdefault(str(args[0]), []).append(str(args[1]))
        elif head == "atlocation":
            agent_at = str(args[1])
        elif head == "openable":
            openable.add(named(args[0], "receptacle"))
        elif head == "cancontain":
            can_contain.add((_type_class(str(args[0])), _type_class(str(args[1]))))
        elif head in _STATE_FACTS:
            state_sets[_STATE_FACTS[head]].add(named(args[0], "thing"))
        elif head in _PROPERTY_FACTS:
            properties[_PROPERTY_FACTS[head]].add(named(args[0], "object"))
        elif head in ("ison", "istoggled"):
            raise UnsupportedGame(f"a lamp that is on at the start ({head} {named(args[0], 'lamp')})")
        elif head in ("holds", "holdsany", "holdsanyreceptacleobject"):
            raise UnsupportedGame("an agent that holds something at the start")
        elif head == "inreceptacleobject":
            raise UnsupportedGame(
                f"an object inside an object ({named(args[0], 'object')} in {named(args[1], 'object')})"
            )
        elif head not in IGNORED_FACTS:
            raise UnsupportedGame(f"a fact the native engine has no rule for: ({' '.join(map(str, fact))})")

    for pddl_id in (*receptacle_ids, *object_ids):
        noun = named(pddl_id, "thing")
        if pddl_id not in types:
            raise UnsupportedGame(f"{noun} has no type")
        if types[pddl_id] != noun.rsplit(" ", 1)[0]:
            raise UnsupportedGame(f"{noun}'s id and type name different classes ({pddl_id}: {types[pddl_id]})")
    where_is: dict[str, list[str]] = {}
    for pddl_id in receptacle_ids:
        if pddl_id not in locations:
            raise UnsupportedGame(f"{names[pddl_id]} has no location")
        where_is.setdefault(locations[pddl_id], []).append(names[pddl_id])
    colocated = tuple(tuple(sorted(group, key=listing_order)) for group in where_is.values() if len(group) > 1)
    if agent_at is None:
        raise UnsupportedGame("an agent without a start location")
    if agent_at in where_is:
        raise UnsupportedGame(f"an agent that starts at {where_is[agent_at][0]} (not in the middle of the room)")

    receptacles = tuple(sorted((names[i] for i in receptacle_ids), key=listing_order))
    objects = tuple(sorted((names[i] for i in object_ids), key=listing_order))
    start_places = []
    for pddl_id in sorted(object_ids, key=lambda i: listing_order(names[i])):
        holders = places.get(pddl_id, [])
        if len(holders) != 1:
            where = "in no receptacle (on the floor)" if not holders else f"in {len(holders)} receptacles"
            raise UnsupportedGame(f"{names[pddl_id]} {where}")
        start_places.append(named(holders[0], "receptacle"))
    house = Household(scene or "custom", -1, receptacles, objects, tuple(sorted(colocated)))

    task_type = task_type_of_goal(data["pddl_problem"])
    if task_type == "unknown":
        raise UnsupportedGame("a goal that is none of ALFWorld's six task types")
    obj, recep, toggle = _goal_classes(goal)
    sentence = _SENTENCE.search(str(data.get("grammar", "")))
    if obj is None or sentence is None:
        raise UnsupportedGame("a goal without an object class, or a grammar without the task's sentence")
    try:
        game_goal = Goal(task_type, obj, recep if task_type != "look_at_obj_in_light" else None, toggle, sentence[1])
    except ValueError as err:
        raise UnsupportedGame(f"a goal the native engine cannot state: {err}") from err

    present = {(r.rsplit(" ", 1)[0], o.rsplit(" ", 1)[0]) for r in receptacles for o in objects}
    rules = Rules(
        openable=frozenset(openable),
        can_contain=frozenset(can_contain & present),
        **{name: frozenset(found) for name, found in properties.items()},
    )
    takeable_lamps = rules.toggleable & rules.pickupable
    if takeable_lamps:
        raise UnsupportedGame(f"a toggleable object that can be taken ({sorted(takeable_lamps)[0]})")
    start = WorldState(
        None, None, tuple(start_places), **{name: frozenset(found) for name, found in state_sets.items()}
    )
    custom = None if rules == Rules.of_classes(house) else rules  # ALFRED's tables: a generated game's rules
    return Game(house, game_goal, start, split, index, name, custom)


@lru_cache(maxsize=4096)
def _load(path: str, modified: float) -> Game:
    from cola_gym.tasks.household.alfworld import load_game_file

    data = load_game_file(path)
    scene = ""
    record = Path(path).parent / "traj_data.json"
    if record.is_file():
        try:
            scene = str(json.loads(record.read_text())["scene"]["floor_plan"])
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError, UnicodeDecodeError):
            scene = ""
    try:
        return native_game(data, name=path, scene=scene)
    except UnsupportedGame as err:
        raise UnsupportedGame(
            f"{path}: the native engine cannot play this game: {err}. Play it with backend='alfworld'"
        ) from err


def load_native_game(game_file: GameFile | str | os.PathLike[str]) -> Game:
    """The native game of a game file (read once per file and modification time).

    Raises:
        UnsupportedGame: see :func:`native_game`; the message names the file.
        FileNotFoundError, ValueError: no such file, or not a game file.
    """
    path = str(game_file.path if isinstance(game_file, GameFile) else game_file)
    return _load(path, os.path.getmtime(path) if os.path.exists(path) else 0.0)
