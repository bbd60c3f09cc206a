"""The household engine: ALFWorld 0.4's wording, grammar, rules and goal checks, by value."""

from __future__ import annotations

import pytest

from cola_gym.tasks.household import Game, Goal, Household, WorldState, admissible_commands, intro, step
from cola_gym.tasks.household.engine import HELP_TEXT, NOTHING_HAPPENS, listing, normalize_command


def kitchen(
    task_type: str = "pick_heat_then_place_in_recep", sentence: str = "heat some apple and put it in countertop"
) -> Game:
    """The room of ALFWorld's documented example: an apple in the closed fridge, a mug and a
    knife on the countertop."""
    house = Household(
        "kitchen",
        0,
        ("cabinet 1", "countertop 1", "fridge 1", "microwave 1", "sinkbasin 1"),
        ("apple 1", "knife 1", "mug 1"),
    )
    start = WorldState(None, None, ("fridge 1", "countertop 1", "countertop 1"))
    return Game(house, Goal(task_type, "apple", "countertop", None, sentence), start)


def play(game: Game, commands: list[str]) -> list[tuple[str, WorldState, bool]]:
    state, out = game.start, []
    for command in commands:
        result = step(game, state, command)
        state = result.state
        out.append((result.feedback, state, result.won))
    return out


def test_alfworld_wording_of_the_documented_game() -> None:
    game = kitchen()
    assert intro(game) == (
        "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly around you, "
        "you see a cabinet 1, a countertop 1, a fridge 1, a microwave 1, and a sinkbasin 1.\n\n"
        "Your task is to: heat some apple and put it in countertop."
    )
    assert admissible_commands(game, game.start) == [
        "go to cabinet 1", "go to countertop 1", "go to fridge 1", "go to microwave 1", "go to sinkbasin 1",
        "help", "inventory", "look",
    ]  # fmt: skip
    commands = ["go to fridge 1", "open fridge 1", "take apple 1 from fridge 1", "go to microwave 1",
                "heat apple 1 with microwave 1", "go to countertop 1", "move apple 1 to countertop 1"]  # fmt: skip
    texts = [feedback for feedback, _, _ in play(game, commands)]
    assert texts == [
        "You arrive at fridge 1. The fridge 1 is closed.",
        "You open the fridge 1. The fridge 1 is open. In it, you see a apple 1.",
        "You pick up the apple 1 from the fridge 1.",
        "You arrive at microwave 1. The microwave 1 is closed.",
        "You heat the apple 1 using the microwave 1.",
        "You arrive at countertop 1. On the countertop 1, you see a knife 1, and a mug 1.",
        "You move the apple 1 to the countertop 1.",
    ]
    assert [won for _, _, won in play(game, commands)] == [False] * 6 + [True]


def test_admissible_commands_follow_alfworlds_preconditions() -> None:
    game = kitchen()
    (_, at_fridge, _), (_, opened, _), (_, holding, _) = play(
        game, ["go to fridge 1", "open fridge 1", "take apple 1 from fridge 1"]
    )
    assert admissible_commands(game, at_fridge) == [
        "examine fridge 1", "go to cabinet 1", "go to countertop 1", "go to microwave 1", "go to sinkbasin 1",
        "help", "inventory", "look", "open fridge 1",
    ]  # fmt: skip
    assert "take apple 1 from fridge 1" in admissible_commands(game, opened)
    assert "close fridge 1" in admissible_commands(game, opened)
    assert admissible_commands(game, holding) == [
        "close fridge 1", "cool apple 1 with fridge 1", "examine apple 1", "examine fridge 1", "go to cabinet 1",
        "go to countertop 1", "go to microwave 1", "go to sinkbasin 1", "help", "inventory", "look",
        "move apple 1 to fridge 1",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("commands", "expected"),
    [
        (["inventory"], "You are not carrying anything."),
        (
            ["go to fridge 1", "open fridge 1", "take apple 1 from fridge 1", "inventory"],
            "You are carrying: a apple 1.",
        ),
        (["look"], "You are in the middle of a room. Looking quickly around you, you see nothing."),
        (["go to fridge 1", "look"], "You are facing the fridge 1. Next to it, you see nothing."),
        (["go to fridge 1", "examine fridge 1"], "The fridge 1 is closed."),
        (["go to fridge 1", "open fridge 1", "open fridge 1"], NOTHING_HAPPENS),
        (["go to fridge 1", "open fridge 1", "close fridge 1"], "You close the fridge 1."),
        (
            ["go to fridge 1", "open fridge 1", "take apple 1 from fridge 1", "examine apple 1"],
            "There's nothing special about apple 1.",
        ),
        (
            [
                "go to fridge 1",
                "open fridge 1",
                "take apple 1 from fridge 1",
                "cool apple 1 with fridge 1",
                "examine apple 1",
            ],
            "This is a cold apple 1.",
        ),
        (
            [
                "go to fridge 1",
                "open fridge 1",
                "take apple 1 from fridge 1",
                "go to sinkbasin 1",
                "clean apple 1 with sinkbasin 1",
            ],
            "You clean the apple 1 using the sinkbasin 1.",
        ),
        (
            ["go to countertop 1", "take mug 1 from countertop 1", "go to fridge 1", "move mug 1 to fridge 1"],
            NOTHING_HAPPENS,
        ),  # closed
        (["help"], HELP_TEXT),
    ],
)
def test_feedback_table(commands: list[str], expected: str) -> None:
    assert play(kitchen(), commands)[-1][0] == expected


@pytest.mark.parametrize(
    "command",
    [
        "take apple 1 from fridge 1",  # not there yet
        "go to fridge 2",  # no such receptacle
        "heat apple 1 with microwave 1",  # not holding it
        "put apple 1 in/on countertop 1",  # not holding it either
        "go  to  the fridge 1",
        "",
        "   ",
        "go to fridge 1; go to microwave 1",
        "x" * 100_000,
        "go to fridge 1\x00",
        "\u202egо to fridge 1",  # Cyrillic o, bidi override
        "__import__('os').system('true')",
    ],
)
def test_commands_that_are_not_admissible_change_nothing(command: str) -> None:
    game = kitchen()
    result = step(game, game.start, command)
    assert (result.feedback, result.admissible, result.state) == (NOTHING_HAPPENS, False, game.start)


def test_rules_one_object_in_hand_appliances_and_open_doors() -> None:
    game = kitchen()
    holding = play(game, ["go to countertop 1", "take mug 1 from countertop 1"])[-1][1]
    assert "take knife 1 from countertop 1" not in admissible_commands(game, holding)
    at_sink = step(game, holding, "go to sinkbasin 1").state
    assert "heat mug 1 with sinkbasin 1" not in admissible_commands(game, at_sink)
    assert "clean mug 1 with sinkbasin 1" in admissible_commands(game, at_sink)
    at_microwave = step(game, holding, "go to microwave 1").state
    hot = step(game, at_microwave, "heat mug 1 with microwave 1").state  # a closed microwave heats
    assert hot.hot == {"mug 1"}
    heat_then_cool = ["go to countertop 1", "take mug 1 from countertop 1", "go to microwave 1",
                      "heat mug 1 with microwave 1", "go to fridge 1", "cool mug 1 with fridge 1"]  # fmt: skip
    cooled = play(game, heat_then_cool)[-1][1]
    assert (cooled.hot, cooled.cool) == (frozenset(), {"mug 1"})
    knife = step(game, holding, "go to countertop 1").state
    assert "heat knife 1 with microwave 1" not in admissible_commands(game, knife)


def test_go_to_always_arrives() -> None:
    """ALFWorld answers "Nothing happens." to `go to` a receptacle sharing the agent's location;
    here every receptacle has its own location."""
    game = kitchen()
    state = game.start
    for receptacle in game.house.receptacles:
        result = step(game, state, f"go to {receptacle}")
        assert result.feedback.startswith(f"You arrive at {receptacle}.")
        state = result.state
        assert f"go to {receptacle}" not in admissible_commands(game, state)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("put apple 1 in countertop 1", "move apple 1 to countertop 1"),
        ("put apple 1 on countertop 1", "move apple 1 to countertop 1"),
        ("put apple 1 in/on countertop 1", "move apple 1 to countertop 1"),
        ("  Go To  Fridge 1. ", "go to fridge 1"),
        ("MOVE apple 1 TO countertop 1", "move apple 1 to countertop 1"),
    ],
)
def test_command_normalization_and_the_put_alias(text: str, command: str) -> None:
    assert normalize_command(text) == command


@pytest.mark.parametrize("normalize", [False, True])
def test_put_alias_plays_like_move_only_when_normalized(normalize: bool) -> None:
    """ALFWorld 0.4 answers ``put A on X`` and ``Go To X.`` with ``Nothing happens.``: the engine
    plays commands exactly as listed; :func:`normalize_command` forgives them first."""
    game = kitchen(task_type="pick_and_place_simple", sentence="put a apple in countertop")
    commands = ["Go to fridge 1.", "open fridge 1", "take apple 1 from fridge 1", "go to countertop 1",
                "put apple 1 on countertop 1"]  # fmt: skip
    if normalize:
        commands = [normalize_command(c) for c in commands]
    *_, (feedback, _, won) = play(game, commands)
    if normalize:
        assert (feedback, won) == ("You move the apple 1 to the countertop 1.", True)
    else:
        assert (feedback, won) == (NOTHING_HAPPENS, False)


def test_lists_and_their_order() -> None:
    assert listing([]) == "nothing"
    assert listing(["apple 1"]) == "a apple 1"
    assert listing(["knife 1", "mug 1"]) == "a knife 1, and a mug 1"
    assert listing(["a 1", "b 1", "c 1"]) == "a a 1, a b 1, and a c 1"
    house = Household("kitchen", 0, ("cabinet 1", "cabinet 2", "cabinet 3", "sinkbasin 1", "shelf 1"), ())
    game = Game(
        house, Goal("pick_and_place_simple", "apple", "shelf", None, "put a apple in shelf"), WorldState(None, None, ())
    )
    # ALFWorld lists by id: higher numbers first, and a sink basin's id starts with "sink"
    assert "a cabinet 3, a cabinet 2, a cabinet 1, a shelf 1, and a sinkbasin 1." in intro(game)


@pytest.mark.parametrize(
    ("task_type", "sentence", "commands", "toggle"),
    [
        ("pick_and_place_simple", "put a apple in countertop",
         ["go to fridge 1", "open fridge 1", "take apple 1 from fridge 1", "go to countertop 1",
          "move apple 1 to countertop 1"], None),
        ("pick_clean_then_place_in_recep", "put a clean apple in countertop",
         ["go to fridge 1", "open fridge 1", "take apple 1 from fridge 1", "go to sinkbasin 1",
          "clean apple 1 with sinkbasin 1", "go to countertop 1", "move apple 1 to countertop 1"], None),
        ("pick_cool_then_place_in_recep", "put a cool apple in countertop",
         ["go to fridge 1", "open fridge 1", "take apple 1 from fridge 1", "cool apple 1 with fridge 1",
          "go to countertop 1", "move apple 1 to countertop 1"], None),
    ],
)  # fmt: skip
def test_goal_checks_need_every_condition(task_type: str, sentence: str, commands: list[str], toggle: None) -> None:
    game = kitchen(task_type, sentence)
    results = play(game, commands)
    assert [won for *_, won in results] == [False] * (len(commands) - 1) + [True]
    if task_type != "pick_and_place_simple":  # skipping the processing step leaves the goal open
        skipped = [c for c in commands if not c.startswith(("clean", "cool"))]
        assert not play(game, skipped)[-1][2]


def test_look_in_light_and_pick_two() -> None:
    house = Household("bedroom", 0, ("desk 1", "bed 1", "drawer 1"), ("book 1", "book 2", "desklamp 1"))
    start = WorldState(None, None, ("bed 1", "bed 1", "desk 1"))
    look = Game(house, Goal("look_at_obj_in_light", "book", None, "desklamp", "look at book under the desklamp"), start)
    results = play(look, ["go to bed 1", "take book 1 from bed 1", "go to desk 1", "use desklamp 1"])
    assert [won for *_, won in results] == [False, False, False, True]
    assert results[-1][0] == "You turn on the desklamp 1."
    assert "take desklamp 1 from desk 1" not in admissible_commands(look, step(look, start, "go to desk 1").state)
    lit_elsewhere = play(look, ["go to desk 1", "use desklamp 1", "go to bed 1", "take book 1 from bed 1"])
    assert not lit_elsewhere[-1][2], "the lamp must be where the agent holds the book"
    two = Game(house, Goal("pick_two_obj_and_place", "book", "desk", None, "put two book in desk"), start)
    results = play(two, ["go to bed 1", "take book 1 from bed 1", "go to desk 1", "move book 1 to desk 1",
                         "go to bed 1", "take book 2 from bed 1", "go to desk 1", "move book 2 to desk 1"])  # fmt: skip
    assert [won for *_, won in results] == [False] * 7 + [True]


def test_games_reject_inconsistent_content() -> None:
    house = Household("kitchen", 0, ("fridge 1",), ("apple 1",))
    goal = Goal("pick_and_place_simple", "apple", "fridge", None, "put a apple in fridge")
    with pytest.raises(ValueError, match="every object"):
        Game(house, goal, WorldState(None, None, ()))
    with pytest.raises(ValueError, match="lacks"):
        Game(house, goal, WorldState(None, None, ("shelf 1",)))
    with pytest.raises(ValueError, match="unique"):
        Household("kitchen", 0, ("fridge 1", "fridge 1"), ())
    with pytest.raises(ValueError, match="task_type"):
        Goal("slice_and_place", "apple", "fridge", None, "x")
    with pytest.raises(ValueError, match="lamp"):
        Goal("look_at_obj_in_light", "book", None, None, "x")
