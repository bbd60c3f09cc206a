"""The real ALFWorld engine against ours, on the same generated games (differential test)."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cola_gym.tasks.household import (
    TASK_TYPES,
    Game,
    Goal,
    Household,
    WorldState,
    admissible_commands,
    expert_plan,
    generate_game,
    intro,
    normalize_command,
    step,
)
from cola_gym.tasks.household.alfworld import AlfworldSession, load_game_file, tw_pddl_game
from cola_gym.tasks.household.vocabulary import (
    LAMPS,
    OBJECT_CLASSES,
    OPENABLE,
    RECEPTACLE_OBJECTS,
    SCENES,
    alfred_name,
    can_hold,
)
from cola_gym.tasks.household.world import class_of

pytest.importorskip("alfworld", reason="the ALFWorld extra is not installed")


def _compare(game, session: AlfworldSession, commands: list[str]) -> bool:
    """Plays ``commands`` in both engines; asserts they agree at every step; returns ``won``."""
    reply = session.reset()
    assert reply.text == intro(game)
    assert sorted(reply.admissible) == admissible_commands(game, game.start)
    state = game.start
    for command in commands:
        ours = step(game, state, command)
        theirs = session.play(command)
        where = f"{game.name} after {session.history}"
        assert sorted(theirs.admissible) == admissible_commands(game, ours.state), where
        assert theirs.won == ours.won, where
        assert theirs.text == ours.feedback.strip(), where
        state = ours.state
    return ours.won


def test_24_games_the_expert_wins_in_both_engines_and_they_agree_at_every_step() -> None:
    """Two games of each task type from each evaluation split (the six types come in turn)."""
    games = [generate_game("valid_seen", i) for i in range(12)] + [generate_game("valid_unseen", i) for i in range(12)]
    assert all(sum(g.goal.task_type == games[t].goal.task_type for g in games) == 4 for t in range(6))
    for game in games:
        session = AlfworldSession(tw_pddl_game(game))
        assert _compare(game, session, expert_plan(game)), f"{game.name}: the expert did not win in ALFWorld"
        session.close()


def test_random_walks_agree_including_commands_that_do_nothing() -> None:
    rng = np.random.default_rng(0)
    for index in range(8):
        game = generate_game("train", index)
        state, commands = game.start, []
        for _ in range(14):
            options = [*admissible_commands(game, state), "go to nowhere 1", "take moon 1 from sky 1"]
            command = str(rng.choice(options))
            commands.append(command)
            state = step(game, state, command).state
        session = AlfworldSession(tw_pddl_game(game))
        _compare(game, session, commands)
        session.close()


def test_the_put_alias_is_refused_as_alfworld_refuses_it_unless_normalized() -> None:
    """ALFWorld 0.4 answers the 0.3 `put A in/on X` with "Nothing happens.", and so does the engine;
    normalized first (the envs' ``lenient_commands``), it plays as ``move``."""
    game = next(g for i in range(50) if (g := generate_game("valid_seen", i)).goal.task_type == "pick_and_place_simple")
    plan = expert_plan(game)
    aliased = [*plan[:-1], plan[-1].replace("move ", "put ").replace(" to ", " in ")]
    session = AlfworldSession(tw_pddl_game(game))
    session.reset()
    for command in aliased:
        theirs = session.play(command)
    assert theirs.text == "Nothing happens." and not theirs.won
    state = game.start
    for command in aliased:
        ours = step(game, state, command)
        state = ours.state
    assert ours.feedback == theirs.text and not ours.won
    state = game.start
    for command in aliased:
        ours = step(game, state, normalize_command(command))
        state = ours.state
    assert ours.won


def test_sessions_replay_a_restored_history() -> None:
    game = generate_game("valid_seen", 3)
    plan = expert_plan(game)
    session = AlfworldSession(tw_pddl_game(game))
    session.reset()
    for command in plan:
        session.play(command)
    assert session.last is not None and session.last.won
    session.replay(plan[:1])  # back to an earlier branch: replayed from the start
    assert session.history == tuple(plan[:1]) and not session.last.won
    session.replay(plan)
    assert session.last.won


def test_game_files_by_path_and_alfworld_data(tmp_path, monkeypatch) -> None:
    game = generate_game("valid_seen", 0)
    folder = tmp_path / "pick_and_place_simple-x" / "trial_1"
    folder.mkdir(parents=True)
    (folder / "game.tw-pddl").write_text(json.dumps(tw_pddl_game(game)))
    data = load_game_file(folder)
    assert AlfworldSession(data).reset().text == intro(game)
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    assert load_game_file("pick_and_place_simple-x/trial_1/game.tw-pddl") == data
    with pytest.raises(FileNotFoundError, match="ALFWORLD_DATA"):
        load_game_file("missing/game.tw-pddl")
    (folder / "game.tw-pddl").write_text("{not json")
    with pytest.raises(ValueError, match="not an ALFWorld game file"):
        load_game_file(folder)
    (folder / "game.tw-pddl").write_text(json.dumps({"grammar": ""}))
    with pytest.raises(ValueError, match="missing"):
        load_game_file(folder)


def test_a_clear_error_without_the_extra(monkeypatch) -> None:
    from cola_gym.tasks.household.backends import make_backend

    monkeypatch.setitem(sys.modules, "alfworld", None)
    with pytest.raises(ImportError, match=r"cola-gym\[alfworld\]"):
        make_backend("alfworld")
    with pytest.raises(ValueError, match="backend"):
        make_backend("unity")


def test_a_game_files_task_type_comes_from_the_game_not_its_folder(tmp_path: Path) -> None:
    from cola_gym.tasks.household.alfworld import find_game_files
    from cola_gym.tasks.household.world import GameFile, task_type_of_goal

    games = {t: next(g for i in range(60) if (g := generate_game("valid_seen", i)).goal.task_type == t)
             for t in TASK_TYPES}  # fmt: skip
    for number, (task_type, game) in enumerate(games.items()):  # misleading names: the PDDL goal decides
        path = tmp_path / "flat" / f"pick_and_place_simple-{number}.tw-pddl"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(tw_pddl_game(game)))
        assert GameFile(str(path)).task_type == task_type
    assert len(find_game_files(tmp_path / "flat")) == len(TASK_TYPES)  # any *.tw-pddl, not only game.tw-pddl
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / "game.tw-pddl").write_text(json.dumps(tw_pddl_game(games["pick_and_place_simple"])))
    (trial / "traj_data.json").write_text(json.dumps({"task_type": "pick_heat_then_place_in_recep"}))
    assert GameFile(str(trial / "game.tw-pddl")).task_type == "pick_heat_then_place_in_recep"  # ALFRED's record
    assert task_type_of_goal("(define (problem p) (:objects))") == "unknown"
    (tmp_path / "broken.tw-pddl").write_text("not json")
    assert GameFile(str(tmp_path / "broken.tw-pddl")).task_type == "unknown"


def test_what_fits_where_is_alfreds_receptacle_object_table() -> None:
    """Every (receptacle class, object class) pair of our vocabulary against ALFWorld's own
    ``VAL_RECEPTACLE_OBJECTS``; ALFRED's movable receptacles are objects, not receptacles."""
    from alfworld.gen import constants

    table = constants.VAL_RECEPTACLE_OBJECTS
    fixed = {name for name in table if name not in constants.MOVABLE_RECEPTACLES}
    assert {alfred_name(r) for r in RECEPTACLE_OBJECTS} == fixed
    pairs = [(r, o) for r in RECEPTACLE_OBJECTS for o in sorted({*OBJECT_CLASSES, *LAMPS})]
    assert len(pairs) == 29 * 48  # ALFRED's 29 fixed receptacle classes; our 47 object classes and the desk lamp
    differing = [(r, o) for r, o in pairs if can_hold(r, o) != (alfred_name(o) in table[alfred_name(r)])]
    assert differing == []
    sliceable = {o for o, properties in OBJECT_CLASSES.items() if properties.sliceable}
    assert {alfred_name(o) for o in sliceable} == constants.VAL_ACTION_OBJECTS["Sliceable"]


def _full_room(scene: str) -> Game:
    """One receptacle of each class of a scene type and one object of each class, each in the
    first receptacle that holds it; the goal moves the first object that has two places."""
    receptacles = tuple(f"{cls} 1" for cls, _, _ in SCENES[scene].receptacles)
    objects = tuple(f"{cls} 1" for cls in SCENES[scene].objects)
    holders = {o: [r for r in receptacles if can_hold(class_of(r), class_of(o))] for o in objects}
    assert all(holders.values()), f"{scene}: objects that fit nowhere: {[o for o, h in holders.items() if not h]}"
    obj = next(o for o in objects if len(holders[o]) > 1)
    recep = class_of(holders[obj][1])
    goal = Goal("pick_and_place_simple", class_of(obj), recep, None, f"put a {class_of(obj)} in {recep}")
    start = WorldState(None, None, tuple(holders[o][0] for o in objects))
    return Game(Household(scene, 0, receptacles, objects), goal, start, name=f"full {scene}")


def _alfreds_own(data: dict) -> dict:
    """ALFWorld's game with ALFWorld's own ``canContain`` and ``sliceable`` facts (from its
    constants, not from our vocabulary), and every receptacle and the agent at one location:
    there ALFWorld lists ``move`` (and ``slice``) for every receptacle at once."""
    from alfworld.gen import constants

    table, sliceable = constants.VAL_RECEPTACLE_OBJECTS, constants.VAL_ACTION_OBJECTS["Sliceable"]
    problem = re.sub(r"\bloc_bar_[1-9]\d*\b", "loc_bar_1", data["pddl_problem"])
    problem = problem.replace("(atLocation agent1 loc_bar_0)", "(atLocation agent1 loc_bar_1)")
    rtypes = re.findall(r"(\w+)Type - rtype", problem)
    otypes = re.findall(r"(\w+)Type - otype", problem)
    facts = [f"  (canContain {r}Type {o}Type)" for r in rtypes for o in otypes if o in table.get(r, ())]
    facts += [
        f"  (sliceable {oid})" for oid, o in re.findall(r"\(objectType (\w+) (\w+)Type\)", problem) if o in sliceable
    ]
    lines, declared = [], set()
    for line in problem.split("\n"):
        if line.strip().startswith(("(canContain ", "(sliceable ")) or line in declared:
            continue
        if line.endswith(" - location"):
            declared.add(line)
        lines.append(line)
        if line == "(:init":
            lines += facts
    return {**data, "pddl_problem": "\n".join(lines)}


@pytest.mark.parametrize("scene", list(SCENES))
def test_move_and_slice_admissibility_agree_for_every_object_at_every_receptacle(scene: str) -> None:
    """Holding each object class of the scene type in turn, the receptacles ALFWorld lets it
    move to (and what it lets a knife slice), by ALFWorld's own tables, are those our engine
    admits at each receptacle."""
    game = _full_room(scene)
    house = game.house
    session = AlfworldSession(_alfreds_own(tw_pddl_game(game)))
    reply = session.reset()
    for receptacle in house.receptacles:
        if class_of(receptacle) in OPENABLE:
            reply = session.play(f"open {receptacle}")
    opened = frozenset(r for r in house.receptacles if class_of(r) in OPENABLE)
    for obj, where in zip(house.objects, game.start.places, strict=True):
        assert f"take {obj} from {where}" in reply.admissible, (scene, obj)
        theirs = session.play(f"take {obj} from {where}").admissible
        holding = replace(game.start.moved(house, obj, None), opened=opened)
        ours = {
            command
            for receptacle in house.receptacles
            for command in admissible_commands(game, replace(holding, location=receptacle))
            if command.startswith(("move ", "slice "))
        }
        assert {c for c in theirs if c.startswith(("move ", "slice "))} == ours, (scene, obj)
        assert f"move {obj} to {where}" in ours
        reply = session.play(f"move {obj} to {where}")
    session.close()


def test_slicing_as_alfworld_slices() -> None:
    """A knife or butter knife in hand slices what lies at the receptacle (closed or not, sliced
    or not); a sliced object stays one object, and examining it says so (with "cool", where an
    unsliced one is "cold")."""
    house = Household(
        "kitchen",
        0,
        ("countertop 1", "fridge 1", "microwave 1", "sinkbasin 1"),
        ("apple 1", "bread 1", "butterknife 1", "knife 1", "tomato 1"),
    )
    start = WorldState(None, None, ("countertop 1", "fridge 1", "sinkbasin 1", "countertop 1", "sinkbasin 1"))
    goal = Goal("pick_heat_then_place_in_recep", "apple", "countertop", None, "put a hot apple in countertop")
    game = Game(house, goal, start, name="slicing")
    commands = [
        "go to countertop 1", "take knife 1 from countertop 1", "slice apple 1 with knife 1",
        "slice apple 1 with knife 1", "go to fridge 1", "slice bread 1 with knife 1", "open fridge 1",
        "go to sinkbasin 1", "slice tomato 1 with knife 1", "move knife 1 to sinkbasin 1",
        "take butterknife 1 from sinkbasin 1", "go to countertop 1", "slice apple 1 with butterknife 1",
        "move butterknife 1 to countertop 1", "take apple 1 from countertop 1", "examine apple 1",
        "go to sinkbasin 1", "clean apple 1 with sinkbasin 1", "examine apple 1", "go to fridge 1",
        "cool apple 1 with fridge 1", "examine apple 1", "go to microwave 1", "heat apple 1 with microwave 1",
        "examine apple 1", "go to fridge 1", "move apple 1 to fridge 1", "go to sinkbasin 1",
        "take tomato 1 from sinkbasin 1", "clean tomato 1 with sinkbasin 1", "go to fridge 1",
        "cool tomato 1 with fridge 1", "examine tomato 1", "move tomato 1 to fridge 1", "take bread 1 from fridge 1",
        "examine bread 1", "inventory",
    ]  # fmt: skip
    session = AlfworldSession(tw_pddl_game(game))
    assert not _compare(game, session, commands)
    session.close()
    state = game.start
    texts = {}
    for command in commands:
        result = step(game, state, command)
        assert result.admissible, command
        texts.setdefault(command, []).append(result.feedback)
        state = result.state
    assert texts["slice apple 1 with knife 1"] == ["You sliced the apple 1 with the knife 1."] * 2
    assert texts["slice bread 1 with knife 1"] == ["You sliced the bread 1 with the knife 1."]  # in the closed fridge
    assert texts["examine apple 1"] == [
        "This is a sliced apple 1.",
        "This is a clean sliced apple 1.",
        "This is a cool and clean sliced apple 1.",
        "This is a hot and clean sliced apple 1.",
    ]
    assert texts["examine tomato 1"] == ["This is a cool and clean sliced tomato 1."]
    assert texts["examine bread 1"] == ["This is a sliced bread 1."]
    assert state.sliced == {"apple 1", "bread 1", "tomato 1"}
