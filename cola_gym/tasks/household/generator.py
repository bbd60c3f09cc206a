"""Seeded procedural households and games, in ALFWorld's splits.

A *layout* is a room: its scene type, receptacles and object classes, fixed by
``(scene type, layout number)`` (like ALFRED's floor plans). Each scene type has
:data:`LAYOUTS_PER_SCENE` layouts; the last :data:`UNSEEN_LAYOUTS` of them are held out: the
``valid_unseen`` games use only those rooms, ``train`` and ``valid_seen`` never do (ALFWorld's
unseen split holds out rooms in the same way). A *game* puts objects in a layout's
receptacles and poses a goal of one of the six task types; game ``index`` of a split is a
pure function of ``(split, task type, index)``, so evaluation sets are fixed: ALFWorld's
sizes, 140 ``valid_seen`` and 134 ``valid_unseen`` games.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cola_gym.tasks.household.engine import is_won
from cola_gym.tasks.household.vocabulary import (
    CLEAN_AT,
    COOL_AT,
    GOAL_TEMPLATES,
    HEAT_AT,
    LAMP_STANDS,
    LOOK_TARGETS,
    OBJECT_CLASSES,
    SCENE_TYPES,
    SCENES,
    TASK_TYPES,
    can_hold,
    resolve_task_type,
)
from cola_gym.tasks.household.world import Game, Goal, Household, WorldState, class_of

SPLITS = ("train", "valid_seen", "valid_unseen")
SPLIT_SIZES = {"train": 100_000, "valid_seen": 140, "valid_unseen": 134}
"""Games per split: ALFWorld's evaluation sizes; train is procedural (any index is a game)."""

LAYOUTS_PER_SCENE = 30
UNSEEN_LAYOUTS = 5
_SPLIT_SEEDS = {"train": 11, "valid_seen": 22, "valid_unseen": 33}
_LAYOUT_SEED = 7
_MAX_REDRAWS = 200

_SCENES_FOR = {
    "pick_and_place_simple": SCENE_TYPES,
    "look_at_obj_in_light": ("livingroom", "bedroom"),
    "pick_clean_then_place_in_recep": ("kitchen", "bathroom"),
    "pick_heat_then_place_in_recep": ("kitchen",),
    "pick_cool_then_place_in_recep": ("kitchen",),
    "pick_two_obj_and_place": SCENE_TYPES,
}
_APPLIANCE = {
    "pick_clean_then_place_in_recep": CLEAN_AT,
    "pick_heat_then_place_in_recep": HEAT_AT,
    "pick_cool_then_place_in_recep": COOL_AT,
}


def layout_numbers(split: str) -> range:
    """The layouts a split's games use."""
    if split == "valid_unseen":
        return range(LAYOUTS_PER_SCENE - UNSEEN_LAYOUTS, LAYOUTS_PER_SCENE)
    return range(LAYOUTS_PER_SCENE - UNSEEN_LAYOUTS)


def room(scene: str, layout: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A layout's receptacle names (one location each) and the object classes found in it."""
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {SCENE_TYPES}, got {scene!r}")
    if not 0 <= layout < LAYOUTS_PER_SCENE:
        raise ValueError(f"layout must be in [0, {LAYOUTS_PER_SCENE}), got {layout}")
    spec = SCENES[scene]
    rng = np.random.default_rng([_LAYOUT_SEED, SCENE_TYPES.index(scene), layout])
    receptacles = []
    for cls, low, high in spec.receptacles:
        receptacles += [f"{cls} {n}" for n in range(1, int(rng.integers(low, high + 1)) + 1)]
    count = min(len(spec.objects), int(rng.integers(6, 10)))
    classes = tuple(sorted(rng.choice(spec.objects, size=count, replace=False).tolist()))
    return tuple(receptacles), classes


def generate_game(split: str, index: int, task_type: str | None = None) -> Game:
    """Game ``index`` of ``split`` (of one task type, or of all six in turn when ``None``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if task_type is not None:
        task_type = resolve_task_type(task_type)
    if not 0 <= index < SPLIT_SIZES[split]:
        raise ValueError(f"index must be in [0, {SPLIT_SIZES[split]}) for {split}, got {index}")
    kind = TASK_TYPES[index % len(TASK_TYPES)] if task_type is None else task_type
    type_code = len(TASK_TYPES) if task_type is None else TASK_TYPES.index(task_type)
    for redraw in range(_MAX_REDRAWS):
        rng = np.random.default_rng([_SPLIT_SEEDS[split], type_code, index, redraw])
        game = _draw_game(rng, split, kind, index)
        if game is not None:
            return game
    raise RuntimeError(f"no valid {kind} game for {split} index {index} after {_MAX_REDRAWS} draws")


def _draw_game(rng: np.random.Generator, split: str, task_type: str, index: int) -> Game | None:
    scene = str(rng.choice(_SCENES_FOR[task_type]))
    layout = int(rng.choice(layout_numbers(split)))
    receptacles, classes = room(scene, layout)
    targets = [c for c in classes if _fits(task_type, c, receptacles)]
    if not targets:
        return None
    target = str(rng.choice(targets))
    destinations = sorted(
        {class_of(r) for r in receptacles if can_hold(class_of(r), target)} - {_APPLIANCE.get(task_type, "")}
    )
    recep = None if task_type == "look_at_obj_in_light" else str(rng.choice(destinations))
    avoid = {recep} if recep else set()
    placed: list[tuple[str, str]] = []
    for cls in classes:
        low = 2 if cls == target and task_type == "pick_two_obj_and_place" else 1
        count = int(rng.integers(low, 4 if cls == target else 3))
        allowed = [r for r in receptacles if can_hold(class_of(r), cls) and (cls != target or class_of(r) not in avoid)]
        if not allowed:
            if cls == target:
                return None
            continue
        placed += [(f"{cls} {n}", str(rng.choice(allowed))) for n in range(1, count + 1)]
    toggle = None
    if task_type == "look_at_obj_in_light":
        stands = [r for r in receptacles if class_of(r) in LAMP_STANDS]
        toggle = "desklamp"
        placed.append(("desklamp 1", str(rng.choice(stands))))
    template = GOAL_TEMPLATES[task_type][int(rng.integers(2))]
    sentence = template.format(obj=target, recep=recep, toggle=toggle)
    objects = tuple(name for name, _ in placed)
    house = Household(scene, layout, receptacles, objects)
    start = WorldState(location=None, holding=None, places=tuple(where for _, where in placed))
    game = Game(house, Goal(task_type, target, recep, toggle, sentence), start, split, index, _name(split, index))
    return None if is_won(game, start) else game


def _fits(task_type: str, cls: str, receptacles: Sequence[str]) -> bool:
    """Whether ``cls`` can be the target of a ``task_type`` game in a room with ``receptacles``."""
    properties = OBJECT_CLASSES[cls]
    classes = {class_of(r) for r in receptacles}
    if task_type == "look_at_obj_in_light":
        return bool(classes & set(LAMP_STANDS)) and cls in LOOK_TARGETS and any(can_hold(c, cls) for c in classes)
    appliance = _APPLIANCE.get(task_type)
    if appliance is not None:
        able = {CLEAN_AT: properties.cleanable, HEAT_AT: properties.heatable, COOL_AT: properties.coolable}[appliance]
        if not able or appliance not in classes:
            return False
    return any(can_hold(c, cls) for c in classes - {appliance})


def _name(split: str, index: int) -> str:
    return f"{split}/{index}"
