"""What households are made of: ALFRED's object and receptacle classes and their properties.

Class names are ALFRED's, written as ALFWorld writes them in text (lower case, no spaces:
``sinkbasin``, ``desklamp``, ``spraybottle``). Properties follow ALFRED's action lists:
which objects can be heated, cooled, cleaned; which receptacles open. What a receptacle can
hold is given per *kind* of object (food, dish, utensil, ...), a coarse version of ALFRED's
receptacle-object table that keeps every placement plausible.
"""

from __future__ import annotations

from dataclasses import dataclass

SCENE_TYPES = ("kitchen", "livingroom", "bedroom", "bathroom")

OPENABLE = frozenset({"cabinet", "drawer", "fridge", "microwave", "safe"})
"""Receptacle classes with a door: closed at the start, open to take from or put into."""

HEAT_AT = "microwave"
COOL_AT = "fridge"
CLEAN_AT = "sinkbasin"
LAMPS = frozenset({"desklamp"})
"""Toggleable objects (``use desklamp 1``); they stand on a receptacle and cannot be taken."""


@dataclass(frozen=True)
class ObjectClass:
    """A pickupable object class: its kind (what may hold it) and what can be done to it."""

    name: str
    kind: str
    heatable: bool = False
    coolable: bool = False
    cleanable: bool = False


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _objects(kind: str, spec: str) -> dict[str, ObjectClass]:
    """``"apple:hcw bread:hc"`` -> classes; h = heatable, c = coolable, w = cleanable (washable)."""
    classes = {}
    for item in spec.split():
        name, _, flags = item.partition(":")
        classes[name] = ObjectClass(name, kind, "h" in flags, "c" in flags, "w" in flags)
    return classes


OBJECT_CLASSES: dict[str, ObjectClass] = {
    **_objects("food", "apple:hcw bread:hc egg:hcw potato:hcw tomato:hcw lettuce:cw"),
    **_objects("dish", "mug:hcw cup:hcw plate:hcw bowl:cw pan:cw pot:cw kettle:w winebottle:c"),
    **_objects("utensil", "knife:w butterknife:w fork:w spoon:w spatula:w ladle:w dishsponge:w"),
    **_objects("condiment", "peppershaker saltshaker soapbottle"),
    **_objects(
        "small",
        "creditcard keychain cellphone cd pen pencil watch remotecontrol alarmclock book laptop newspaper "
        "statue vase candle",
    ),
    **_objects("soft", "pillow"),
    **_objects("bath", "cloth:w soapbar:w handtowel towel plunger scrubbrush spraybottle toiletpaper"),
}

HOLDS: dict[str, frozenset[str]] = {
    cls: frozenset(kinds.split())
    for cls, kinds in {
        "countertop": "food dish utensil condiment small bath",
        "diningtable": "food dish utensil condiment small",
        "coffeetable": "dish small soft",
        "sidetable": "dish small",
        "desk": "dish small",
        "dresser": "dish small bath",
        "shelf": "dish condiment small bath",
        "tvstand": "small",
        "cabinet": "dish utensil condiment small bath",
        "drawer": "utensil small bath",
        "safe": "small",
        "fridge": "food dish",
        "microwave": "food dish",
        "sinkbasin": "food dish utensil bath",
        "stoveburner": "dish",
        "garbagecan": "food condiment small bath",
        "sofa": "small soft",
        "armchair": "small soft",
        "bed": "small soft",
        "toilet": "bath condiment",
        "bathtubbasin": "bath",
        "towelholder": "bath",
        "laundryhamper": "bath",
    }.items()
}
"""Receptacle class -> the object kinds it can hold (ALFRED's ``canContain``, by kind)."""

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
"""ALFWorld's six task types, in its numbering (1-6)."""

SHORT_NAMES = dict(zip(TASK_TYPES, ("put", "examine", "clean", "heat", "cool", "puttwo"), strict=True))
"""The ReAct prompts' short names of the task types."""


def resolve_task_type(name: str) -> str:
    """A task type from its name or its short name (``"heat"`` -> ``pick_heat_then_place_in_recep``)."""
    full = {short: task_type for task_type, short in SHORT_NAMES.items()}.get(name, name)
    if full not in TASK_TYPES:
        raise ValueError(
            f"task_type must be one of {TASK_TYPES} or their short names {tuple(SHORT_NAMES.values())}, got {name!r}"
        )
    return full


GOAL_TEMPLATES: dict[str, tuple[str, str]] = {
    "pick_and_place_simple": ("put a {obj} in {recep}", "put some {obj} on {recep}"),
    "look_at_obj_in_light": ("look at {obj} under the {toggle}", "examine the {obj} with the {toggle}"),
    "pick_clean_then_place_in_recep": ("put a clean {obj} in {recep}", "clean some {obj} and put it in {recep}"),
    "pick_heat_then_place_in_recep": ("put a hot {obj} in {recep}", "heat some {obj} and put it in {recep}"),
    "pick_cool_then_place_in_recep": ("put a cool {obj} in {recep}", "cool some {obj} and put it in {recep}"),
    "pick_two_obj_and_place": ("put two {obj} in {recep}", "find two {obj} and put them in {recep}"),
}
"""ALFWorld's goal sentences per task type (both templates are used, chosen by the game's seed)."""


@dataclass(frozen=True)
class SceneType:
    """A room type: receptacle classes with how many of each (min, max), and object classes."""

    name: str
    receptacles: tuple[tuple[str, int, int], ...]
    objects: tuple[str, ...]


def _counts(spec: str) -> tuple[tuple[str, int, int], ...]:
    """``"cabinet:2-4 fridge"`` -> ``(("cabinet", 2, 4), ("fridge", 1, 1))``."""
    out = []
    for item in spec.split():
        name, _, span = item.partition(":")
        low, _, high = (span or "1").partition("-")
        out.append((name, int(low), int(high or low)))
    return tuple(out)


SCENES: dict[str, SceneType] = {
    "kitchen": SceneType(
        "kitchen",
        _counts(
            "cabinet:1-3 countertop:1-2 drawer:1-2 fridge microwave sinkbasin stoveburner:0-1 diningtable:0-1 "
            "shelf:0-1 garbagecan"
        ),
        _names(
            "apple bread egg potato tomato lettuce mug cup plate bowl pan pot kettle winebottle knife "
            "butterknife fork spoon spatula ladle dishsponge peppershaker saltshaker soapbottle"
        ),
    ),
    "livingroom": SceneType(
        "livingroom",
        _counts("sofa armchair:0-1 coffeetable sidetable:1-2 tvstand:0-1 drawer:0-2 cabinet:0-1 shelf:0-1 garbagecan"),
        _names("creditcard keychain remotecontrol newspaper statue vase watch laptop pillow"),
    ),
    "bedroom": SceneType(
        "bedroom",
        _counts("bed desk:0-1 sidetable:1-2 dresser:0-1 drawer:1-2 shelf:0-1 safe:0-1 garbagecan"),
        _names("alarmclock book cd cellphone creditcard keychain laptop mug pen pencil pillow"),
    ),
    "bathroom": SceneType(
        "bathroom",
        _counts("toilet sinkbasin countertop cabinet:1-3 bathtubbasin:0-1 towelholder:0-1 drawer:0-1 garbagecan"),
        _names("candle cloth soapbar soapbottle spraybottle toiletpaper handtowel towel plunger scrubbrush"),
    ),
}
"""The four ALFRED room types; each household draws its receptacles and objects from one."""

LAMP_STANDS = ("desk", "sidetable", "dresser")
"""Receptacles a desk lamp may stand on (rooms with one get a lamp)."""


def can_hold(receptacle_class: str, object_class: str) -> bool:
    """Whether a receptacle of this class can hold an object of that class."""
    return OBJECT_CLASSES[object_class].kind in HOLDS.get(receptacle_class, frozenset())


_CAMEL = {
    name.lower(): name
    for name in _names(
        "AlarmClock ArmChair BathtubBasin ButterKnife CD CellPhone CoffeeTable CounterTop CreditCard "
        "DeskLamp DiningTable DishSponge GarbageCan HandTowel KeyChain LaundryHamper PepperShaker "
        "RemoteControl SaltShaker ScrubBrush SideTable SinkBasin SoapBar SoapBottle SprayBottle "
        "StoveBurner TVStand ToiletPaper TowelHolder WineBottle"
    )
}


def alfred_name(cls: str) -> str:
    """ALFRED's spelling of a class (``"sinkbasin"`` -> ``"SinkBasin"``), as PDDL types use it."""
    return _CAMEL.get(cls, cls.capitalize())


def alfred_id_prefix(cls: str) -> str:
    """The start of an ALFRED id of this class, lower case (basins: ``Sink|...|SinkBasin``)."""
    return cls[: -len("basin")] if cls.endswith("basin") and cls != "basin" else cls
