"""What households are made of: ALFRED's object and receptacle classes and their properties.

Class names are ALFRED's, written as ALFWorld writes them in text (lower case, no spaces:
``sinkbasin``, ``desklamp``, ``spraybottle``). Properties follow ALFRED's action lists:
which objects can be heated, cooled, cleaned, sliced; which receptacles open. What a
receptacle can hold is ALFRED's receptacle-object table (:data:`RECEPTACLE_OBJECTS`), the
``canContain`` facts of every ALFWorld game.
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
SLICERS = frozenset({"butterknife", "knife"})
"""What slices (``slice apple 1 with knife 1``): ALFRED's domain accepts a knife or a butter knife."""


@dataclass(frozen=True)
class ObjectClass:
    """A pickupable object class and what can be done to it."""

    name: str
    heatable: bool = False
    coolable: bool = False
    cleanable: bool = False
    sliceable: bool = False


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _objects(spec: str) -> dict[str, ObjectClass]:
    """``"apple:hcws bread:hcs"`` -> classes; h = heatable, c = coolable, w = cleanable (washable),
    s = sliceable."""
    classes = {}
    for item in spec.split():
        name, _, flags = item.partition(":")
        classes[name] = ObjectClass(name, "h" in flags, "c" in flags, "w" in flags, "s" in flags)
    return classes


OBJECT_CLASSES: dict[str, ObjectClass] = _objects(
    # food
    "apple:hcws bread:hcs egg:hcws potato:hcws tomato:hcws lettuce:cws "
    # dishes (ALFRED's movable receptacles: ALFWorld plays them as objects, never as receptacles)
    "mug:hcw cup:hcw plate:hcw bowl:cw pan:cw pot:cw kettle:w winebottle:c "
    # utensils
    "knife:w butterknife:w fork:w spoon:w spatula:w ladle:w dishsponge:w "
    # condiments
    "peppershaker saltshaker soapbottle "
    # small things
    "creditcard keychain cellphone cd pen pencil watch remotecontrol alarmclock book laptop newspaper statue vase "
    "candle pillow "
    # bathroom things
    "cloth:w soapbar:w handtowel towel plunger spraybottle toiletpaper"
)

LOOK_TARGETS = frozenset(
    _names(
        "alarmclock book candle cd cellphone creditcard keychain laptop newspaper pen pencil remotecontrol statue "
        "vase watch"
    )
)
"""Object classes a ``look_at_obj_in_light`` game asks to look at under a lamp (small things)."""

_TABLE_TOP = (
    "alarmclock apple book bowl bread butterknife candle cd cellphone cloth creditcard cup dishsponge egg fork "
    "handtowel kettle keychain knife ladle laptop lettuce mug newspaper pan pen pencil peppershaker plate pot potato "
    "remotecontrol saltshaker soapbar soapbottle spatula spoon spraybottle statue toiletpaper tomato vase watch "
    "winebottle"
)
"""What ALFRED's table tops (counter tops, dining, coffee and side tables) hold: all our objects
but pillows, plungers and towels."""

RECEPTACLE_OBJECTS: dict[str, frozenset[str]] = {
    cls: frozenset(objects.split())
    for cls, objects in {
        "armchair": "book cellphone cloth creditcard keychain laptop newspaper pillow remotecontrol",
        "bathtubbasin": "cloth dishsponge handtowel soapbar",
        "bed": "book cellphone laptop newspaper pillow",
        "cabinet": "book bowl candle cd cloth cup dishsponge handtowel kettle ladle mug newspaper pan peppershaker "
        "plate plunger pot saltshaker soapbar soapbottle spraybottle toiletpaper vase winebottle",
        "cart": "candle cloth dishsponge handtowel mug plunger soapbar soapbottle spraybottle statue toiletpaper vase",
        "coffeemachine": "mug",
        "coffeetable": _TABLE_TOP,
        "countertop": _TABLE_TOP,
        "desk": "alarmclock book bowl candle cd cellphone cloth creditcard cup keychain laptop mug newspaper pen "
        "pencil plate remotecontrol soapbottle spraybottle statue toiletpaper vase watch winebottle",
        "diningtable": _TABLE_TOP,
        "drawer": "book butterknife candle cd cellphone cloth creditcard dishsponge fork handtowel keychain knife "
        "ladle newspaper pen pencil peppershaker remotecontrol saltshaker soapbar soapbottle spatula spoon "
        "spraybottle toiletpaper watch",
        "dresser": "alarmclock book bowl candle cd cellphone cloth creditcard cup keychain laptop mug newspaper pen "
        "pencil plate remotecontrol spraybottle statue toiletpaper vase watch winebottle",
        "fridge": "apple bowl bread cup egg lettuce mug pan plate pot potato tomato winebottle",
        "garbagecan": "apple bread cd cloth dishsponge egg handtowel lettuce newspaper pen pencil potato soapbar "
        "soapbottle spraybottle toiletpaper tomato winebottle",
        "handtowelholder": "handtowel",
        "laundryhamper": "cloth",
        "microwave": "apple bowl bread cup egg mug plate potato tomato",
        "ottoman": "book cellphone cloth creditcard keychain laptop newspaper pillow remotecontrol",
        "safe": "cd cellphone creditcard keychain statue vase watch",
        "shelf": "alarmclock book bowl candle cd cellphone cloth creditcard cup dishsponge handtowel kettle keychain "
        "mug newspaper pen pencil peppershaker plate pot remotecontrol saltshaker soapbar soapbottle spraybottle "
        "statue toiletpaper vase watch winebottle",
        "sidetable": _TABLE_TOP,
        "sinkbasin": "apple bowl butterknife cloth cup dishsponge egg fork handtowel kettle knife ladle lettuce mug "
        "pan plate pot potato soapbar spatula spoon tomato",
        "sofa": "book cellphone cloth creditcard keychain laptop newspaper pillow remotecontrol",
        "stoveburner": "kettle pan pot",
        "toaster": "",
        "toilet": "candle cloth dishsponge handtowel newspaper soapbar soapbottle spraybottle toiletpaper",
        "toiletpaperhanger": "toiletpaper",
        "towelholder": "towel",
        "tvstand": "",
    }.items()
}
"""Receptacle class -> the object classes it can hold: ALFRED's receptacle-object constraints
(``VAL_RECEPTACLE_OBJECTS`` in ALFRED's and ALFWorld's ``gen/constants.py``, which ALFWorld's
games state as ``canContain`` facts), for ALFRED's 29 fixed receptacle classes and our
object classes. ALFRED's movable receptacles (bowl, box, cup, mug, pan, plate, pot) are
objects in ALFWorld: nothing is put into them. A toaster holds only sliced bread and a TV
stand only tissue boxes, neither of which ALFWorld's games have as objects; ALFRED's scrub
brushes stand on the floor, in no receptacle, so they are not among our objects."""

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
        _names("candle cloth soapbar soapbottle spraybottle toiletpaper handtowel towel plunger"),
    ),
}
"""The four ALFRED room types; each household draws its receptacles and objects from one."""

LAMP_STANDS = ("desk", "sidetable", "dresser")
"""Receptacles a desk lamp may stand on (rooms with one get a lamp)."""


def can_hold(receptacle_class: str, object_class: str) -> bool:
    """Whether a receptacle of this class can hold an object of that class (ALFRED's table,
    :data:`RECEPTACLE_OBJECTS`; ``False`` for lamps and for classes the table does not list)."""
    return object_class in RECEPTACLE_OBJECTS.get(receptacle_class, frozenset())


_CAMEL = {
    name.lower(): name
    for name in _names(
        "AlarmClock ArmChair BathtubBasin ButterKnife CD CellPhone CoffeeMachine CoffeeTable CounterTop CreditCard "
        "DeskLamp DiningTable DishSponge GarbageCan HandTowel HandTowelHolder KeyChain LaundryHamper PepperShaker "
        "RemoteControl SaltShaker SideTable SinkBasin SoapBar SoapBottle SprayBottle StoveBurner TVStand "
        "ToiletPaper ToiletPaperHanger TowelHolder WineBottle"
    )
}


def alfred_name(cls: str) -> str:
    """ALFRED's spelling of a class (``"sinkbasin"`` -> ``"SinkBasin"``), as PDDL types use it."""
    return _CAMEL.get(cls, cls.capitalize())


def alfred_id_prefix(cls: str) -> str:
    """The start of an ALFRED id of this class, lower case (basins: ``Sink|...|SinkBasin``)."""
    return cls[: -len("basin")] if cls.endswith("basin") and cls != "basin" else cls
