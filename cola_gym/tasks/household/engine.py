"""The rules and the words: admissible commands, their effects, and ALFWorld 0.4's text.

Pure functions of a :class:`~cola_gym.tasks.household.world.Game` and a
:class:`~cola_gym.tasks.household.world.WorldState`. The grammar is ALFWorld 0.4's (``go to X``,
``take A from X``, ``move A to X``, ``open X``, ``close X``, ``use X``, ``heat A with X``,
``cool A with X``, ``clean A with X``, ``slice A with K``, ``examine X``, ``inventory``, ``look``,
``help``); the older ``put A in X`` / ``put A on X`` of ALFWorld 0.3 prompts is accepted as
``move A to X``.
A command is matched after lower-casing and collapsing spaces (a trailing ``.`` is dropped);
anything that is not admissible answers ``Nothing happens.`` and changes nothing, as in
ALFWorld. The rules are ALFRED's PDDL domain: one object in hand; take from and put into a
receptacle only when it is open; heat at a microwave, cool at a fridge, clean at a sink
basin, each while holding the object; what goes into which receptacle is ALFRED's table
(:func:`~cola_gym.tasks.household.vocabulary.can_hold`), or the game's own facts
(:class:`~cola_gym.tasks.household.world.Rules`); a lamp is used where it stands; there is no
losing.

Slicing is ALFRED's ``SliceObject``: holding a knife or a butter knife at a receptacle, every
sliceable object (apple, bread, egg, lettuce, potato, tomato) in it can be sliced, even in a
closed one (the domain asks only that the object be at the agent's location), and again once
sliced. ALFWorld lists these commands in any game whose room has a knife and something to
slice, although none of its six task types needs them. A sliced object stays one object; only
``examine`` shows it ("This is a sliced apple 1.").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from cola_gym.tasks.household.vocabulary import CLEAN_AT, COOL_AT, HEAT_AT, SLICERS
from cola_gym.tasks.household.world import Game, WorldState, class_of, listing_order

NOTHING_HAPPENS = "Nothing happens."
WELCOME = "-= Welcome to TextWorld, ALFRED! =-"
HELP_TEXT = (
    "\nAvailable commands:\n"
    "  look:                             look around your current location\n"
    "  inventory:                        check your current inventory\n"
    "  go to (receptacle):               move to a receptacle\n"
    "  open (receptacle):                open a receptacle\n"
    "  close (receptacle):               close a receptacle\n"
    "  take (object) from (receptacle):  take an object from a receptacle\n"
    "  move (object) to (receptacle):  place an object in or on a receptacle\n"
    "  examine (something):              examine a receptacle or an object\n"
    "  use (object):                     use an object\n"
    "  heat (object) with (receptacle):  heat an object using a receptacle\n"
    "  clean (object) with (receptacle): clean an object using a receptacle\n"
    "  cool (object) with (receptacle):  cool an object using a receptacle\n"
    "  slice (object) with (object):     slice an object using a sharp object\n"
)
"""ALFWorld 0.4's ``help`` text."""

_PUT_ALIAS = re.compile(r"^put (?P<obj>.+?) (?:in|on|in/on|into|onto) (?P<recep>.+)$")
_APPLIANCE = {"heat": HEAT_AT, "cool": COOL_AT, "clean": CLEAN_AT}


@dataclass(frozen=True)
class StepResult:
    """The engine's answer to a command: the new state, its text, whether the command was
    admissible (``False``: ``Nothing happens.``) and whether the goal now holds."""

    state: WorldState
    feedback: str
    admissible: bool
    won: bool


def listing(names: tuple[str, ...] | list[str]) -> str:
    """ALFWorld's list form: ``a knife 1, and a mug 1`` (always ``a``; ``nothing`` when empty)."""
    items = [f"a {name}" for name in names]
    if not items:
        return "nothing"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + ", and " + items[-1]


def intro(game: Game) -> str:
    """The first observation: welcome line, the room's receptacles, the task."""
    around = listing(sorted(game.house.receptacles, key=listing_order))
    return (
        f"{WELCOME}\n\nYou are in the middle of a room. Looking quickly around you, you see {around}.\n\n"
        f"Your task is to: {game.goal.sentence}."
    )


def describe_receptacle(game: Game, state: WorldState, receptacle: str) -> str:
    """What ``examine`` (and arriving) shows of a receptacle."""
    inside = listing(state.contents(game.house, receptacle))
    if receptacle in game.rules.openable:
        if receptacle not in state.opened:
            return f"The {receptacle} is closed."
        return f"The {receptacle} is open. In it, you see {inside}."
    return f"On the {receptacle}, you see {inside}."


def describe_object(game: Game, state: WorldState, obj: str) -> str:
    """What ``examine`` shows of an object: ALFWorld's first matching description (it says
    "cold" only of an object that is cool and neither clean nor sliced, else "cool")."""
    if obj in game.rules.receptacle_objects:
        return f"This is a normal {obj}. In it, you see nothing."
    hot, cool, clean, sliced = (obj in group for group in (state.hot, state.cool, state.clean, state.sliced))
    temperature = ""
    if hot:
        temperature = "hot"
    elif cool:
        temperature = "cool" if sliced or clean else "cold"
    words = " and ".join(word for word in (temperature, "clean" if clean else "") if word)
    if words:
        return f"This is a {words} sliced {obj}." if sliced else f"This is a {words} {obj}."
    if obj in game.rules.toggleable:
        return f"This {obj} is {'on' if obj in state.lit else 'off'}."
    if sliced:
        return f"This is a sliced {obj}."
    return f"There's nothing special about {obj}."


Action = tuple[str, ...]


def actions(game: Game, state: WorldState) -> dict[str, Action]:
    """Every admissible command and the action it names (``("take", "apple 1", "fridge 1")``)."""
    house, rules, here, held = game.house, game.rules, state.location, state.holding
    found: dict[str, Action] = {"help": ("help",), "inventory": ("inventory",), "look": ("look",)}
    here_all = house.together(here)
    for receptacle in house.receptacles:
        if receptacle not in here_all:
            found[f"go to {receptacle}"] = ("go", receptacle)
    if held is not None:
        found[f"examine {held}"] = ("examine_object", held)
    for spot in here_all:
        found[f"examine {spot}"] = ("examine", spot)
        openable = spot in rules.openable
        reachable = not openable or spot in state.opened
        if openable:
            verb = "close" if spot in state.opened else "open"
            found[f"{verb} {spot}"] = (verb, spot)
        inside = state.contents(house, spot)
        for obj in inside:
            if obj in rules.toggleable:
                found[f"use {obj}"] = ("use", obj)
            elif held is None and reachable and obj in rules.pickupable:
                found[f"take {obj} from {spot}"] = ("take", obj, spot)
        if held is None:
            continue
        if reachable and (class_of(spot), class_of(held)) in rules.can_contain:
            found[f"move {held} to {spot}"] = ("move", held, spot)
        able = {"heat": held in rules.heatable, "cool": held in rules.coolable, "clean": held in rules.cleanable}
        for verb, appliance in _APPLIANCE.items():
            if able[verb] and class_of(spot) == appliance:
                found[f"{verb} {held} with {spot}"] = (verb, held, spot)
        if class_of(held) in SLICERS:
            for obj in inside:
                if obj in rules.sliceable:
                    found[f"slice {obj} with {held}"] = ("slice", obj, held)
    return found


def admissible_commands(game: Game, state: WorldState) -> list[str]:
    """The admissible commands, sorted as ALFWorld sorts them."""
    return sorted(actions(game, state))


def normalize_command(command: str) -> str:
    """Lower case, single spaces, no trailing period; ``put A in/on X`` becomes ``move A to X``."""
    text = " ".join(str(command).lower().split()).rstrip(".").strip()
    alias = _PUT_ALIAS.match(text)
    if alias:
        text = f"move {alias['obj']} to {alias['recep']}"
    return text


def step(game: Game, state: WorldState, command: str) -> StepResult:
    """Plays one command; a command that is not admissible, written exactly as ALFWorld lists it
    (lower case, single spaces, ``move A to X``), answers ``Nothing happens.`` (normalize first
    with :func:`normalize_command` to forgive case, spacing, a period and ``put A in X``)."""
    action = actions(game, state).get(command)
    if action is None:
        return StepResult(state, NOTHING_HAPPENS, False, is_won(game, state))
    new_state, feedback = _apply(game, state, action)
    return StepResult(new_state, feedback, True, is_won(game, new_state))


def _apply(game: Game, state: WorldState, action: Action) -> tuple[WorldState, str]:
    house, verb = game.house, action[0]
    if verb == "go":
        arrived = replace(state, location=action[1])
        return arrived, f"You arrive at {action[1]}. {describe_receptacle(game, arrived, action[1])}"
    if verb == "open":
        opened = replace(state, opened=state.opened | {action[1]})
        return opened, f"You open the {action[1]}. {describe_receptacle(game, opened, action[1])}"
    if verb == "close":
        return replace(state, opened=state.opened - {action[1]}), f"You close the {action[1]}."
    if verb == "take":
        return state.moved(house, action[1], None), f"You pick up the {action[1]} from the {action[2]}."
    if verb == "move":
        return state.moved(house, action[1], action[2]), f"You move the {action[1]} to the {action[2]}."
    if verb == "heat":
        heated = replace(state, hot=state.hot | {action[1]}, cool=state.cool - {action[1]})
        return heated, f"You heat the {action[1]} using the {action[2]}."
    if verb == "cool":
        cooled = replace(state, cool=state.cool | {action[1]}, hot=state.hot - {action[1]})
        return cooled, f"You cool the {action[1]} using the {action[2]}."
    if verb == "clean":
        return replace(state, clean=state.clean | {action[1]}), f"You clean the {action[1]} using the {action[2]}."
    if verb == "slice":
        return replace(state, sliced=state.sliced | {action[1]}), f"You sliced the {action[1]} with the {action[2]}."
    if verb == "use":
        return replace(state, lit=state.lit | {action[1]}), f"You turn on the {action[1]}."
    if verb == "examine":
        return state, describe_receptacle(game, state, action[1])
    if verb == "examine_object":
        return state, describe_object(game, state, action[1])
    if verb == "inventory":
        held = state.holding
        return state, f"You are carrying: a {held}." if held else "You are not carrying anything."
    if verb == "look":
        if state.location is None:
            return state, "You are in the middle of a room. Looking quickly around you, you see nothing."
        facing = game.house.together(state.location)
        names = facing[0] if len(facing) == 1 else ", ".join(facing[:-1]) + ", and " + facing[-1]
        return state, f"You are facing the {names}. Next to it, you see nothing."
    return state, HELP_TEXT


def is_won(game: Game, state: WorldState) -> bool:
    """Whether the goal holds in ``state`` (ALFWorld's goal conditions for the six task types)."""
    goal, house = game.goal, game.house
    if goal.task_type == "look_at_obj_in_light":
        held = state.holding
        if held is None or class_of(held) != goal.obj or state.location is None:
            return False
        return any(
            class_of(lamp) == goal.toggle and lamp in state.lit
            for spot in house.together(state.location)
            for lamp in state.contents(house, spot)
        )
    condition = {
        "pick_and_place_simple": frozenset(house.objects),
        "pick_two_obj_and_place": frozenset(house.objects),
        "pick_clean_then_place_in_recep": state.clean,
        "pick_heat_then_place_in_recep": state.hot,
        "pick_cool_then_place_in_recep": state.cool,
    }[goal.task_type]
    per_receptacle: dict[str, int] = {}
    for obj, where in zip(house.objects, state.places, strict=True):
        if where is not None and class_of(obj) == goal.obj and class_of(where) == goal.recep and obj in condition:
            per_receptacle[where] = per_receptacle.get(where, 0) + 1
    needed = 2 if goal.task_type == "pick_two_obj_and_place" else 1
    return any(count >= needed for count in per_receptacle.values())
