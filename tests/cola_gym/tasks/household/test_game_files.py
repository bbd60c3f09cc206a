"""ALFWorld's game files on the native engine: read, refused with a reason, played as ALFWorld plays them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from cola_gym.tasks.household import admissible_commands, expert_plan, generate_game, intro, step
from cola_gym.tasks.household.game_files import (
    UnsupportedGame,
    demangled_names,
    load_native_game,
    native_game,
    parse_sexpression,
)
from cola_gym.tasks.household.world import class_of

pytest.importorskip("alfworld", reason="the ALFWorld extra writes and plays the game files")

from cola_gym.tasks.household.alfworld import AlfworldSession, entity_ids, tw_pddl_game


def _differential(game, data, commands) -> bool:
    """Plays ``commands`` on the native game and on ALFWorld's engine with the file: intro, every
    answer, the admissible commands and ``won`` identical at every step; returns ``won``."""
    session = AlfworldSession(data)
    reply = session.reset()
    assert reply.text == intro(game)
    assert sorted(reply.admissible) == admissible_commands(game, game.start)
    state, won = game.start, False
    for command in commands:
        ours, theirs = step(game, state, command), session.play(command)
        where = f"after {session.history}"
        assert theirs.text == ours.feedback.strip(), where
        assert sorted(theirs.admissible) == admissible_commands(game, ours.state), where
        assert theirs.won == ours.won, where
        state, won = ours.state, ours.won
    session.close()
    return won


def _walk(game, seed: int, length: int = 16) -> list[str]:
    rng, state, commands = np.random.default_rng(seed), game.start, []
    for _ in range(length):
        options = [*admissible_commands(game, state), "go to nowhere 1", "take moon 1 from sky 1", "put it there"]
        commands.append(str(rng.choice(options)))
        state = step(game, state, commands[-1]).state
    return commands


def test_every_evaluation_game_reads_back_as_itself() -> None:
    """All 274 valid-seen and valid-unseen games and 60 training games, written as ALFWorld game
    files and read back: the same room, objects in the same places, goal, state and rules."""
    games = [generate_game(split, i) for split, n in (("valid_seen", 140), ("valid_unseen", 134)) for i in range(n)]
    games += [generate_game("train", i) for i in range(60)]
    for game in games:
        read = native_game(tw_pddl_game(game))
        assert sorted(read.house.receptacles) == sorted(game.house.receptacles), game.name
        assert dict(zip(read.house.objects, read.start.places, strict=True)) == dict(
            zip(game.house.objects, game.start.places, strict=True)
        )
        assert read.goal == game.goal and read.start.opened == game.start.opened
        assert read.custom_rules is None and read.rules == game.rules, "ALFRED's tables: no rules of its own"


@pytest.mark.parametrize("split", ["valid_seen", "valid_unseen"])
def test_game_files_play_natively_as_alfworld_plays_them(split: str, tmp_path: Path) -> None:
    """Twelve files per split (two of each task type) in both engines, along the expert's plan
    and a seeded random walk of admissible and inadmissible commands."""
    for index in range(12):
        data = tw_pddl_game(generate_game(split, index))
        path = tmp_path / f"game-{index}.tw-pddl"
        path.write_text(json.dumps(data))
        game = load_native_game(path)
        assert _differential(game, data, expert_plan(game)), f"{path}: the expert did not win"
        _differential(game, data, _walk(game, index))


def _edited(game, edit) -> dict:
    data = tw_pddl_game(game)
    data["pddl_problem"] = edit(data["pddl_problem"], entity_ids(game))
    return data


def _kitchen():
    for index in range(200):
        game = generate_game("valid_seen", index)
        dishes = any(class_of(o) in ("mug", "bowl", "cup") for o in game.house.objects)
        if dishes and any(class_of(r) in ("cabinet", "drawer") for r in game.house.receptacles):
            return game
    raise AssertionError("no kitchen with a dish and a cabinet or drawer")


def test_a_games_own_facts_are_its_rules_and_play_as_in_alfworld() -> None:
    """A file that says more than ALFRED's tables (a receptacle open at the start, a hot object,
    a mug that ALFRED counts as a receptacle, an object that cannot be taken, a receptacle that
    no longer holds what the table lets it hold) plays by its own facts, in both engines."""
    game = _kitchen()
    dish = next(o for o in game.house.objects if class_of(o) in ("mug", "bowl", "cup"))
    storage = next(r for r in game.house.receptacles if class_of(r) in ("cabinet", "drawer"))
    fixed = next(o for o in game.house.objects if o != dish and class_of(o) not in ("desklamp",))

    def edit(problem: str, ids: dict[str, str]) -> str:
        problem = problem.replace(
            "(:init\n",
            f"(:init\n  (opened {ids[storage]})\n  (isHot {ids[dish]})\n  (isReceptacleObject {ids[dish]})\n"
            "  (checked loc_bar_0)\n",
        )
        problem = problem.replace(f"(pickupable {ids[fixed]})\n", "")
        home = class_of(game.start.place_of(game.house, fixed))
        other = next(c for c, o in sorted(game.rules.can_contain) if o == class_of(fixed) and c != home)
        return re.sub(r"\(canContain (\w+)Type (\w+)Type\)", lambda m: _drop(m, other, class_of(fixed)), problem)

    data = _edited(game, edit)
    read = native_game(data)
    assert read.custom_rules is not None
    assert storage in read.start.opened and dish in read.start.hot and dish in read.rules.receptacle_objects
    assert fixed not in read.rules.pickupable
    assert len(read.rules.can_contain) == len(game.rules.can_contain) - 1
    where = read.start.place_of(read.house, dish)
    commands = [f"go to {storage}", f"go to {where}", "open " + where, f"take {dish} from {where}", f"examine {dish}"]
    commands += [f"go to {storage}", f"move {dish} to {storage}", f"go to {read.start.place_of(read.house, fixed)}"]
    commands += [f"take {fixed} from {read.start.place_of(read.house, fixed)}", "look", "inventory"]
    _differential(read, data, commands)
    _differential(read, data, _walk(read, 7, length=30))


def _drop(match: re.Match[str], receptacle: str, obj: str) -> str:
    same = match[1].lower() == receptacle and match[2].lower() == obj
    return "" if same else match[0]


@pytest.mark.parametrize("group", [2, 3])
def test_receptacles_sharing_a_location_play_as_in_alfworld(group: int) -> None:
    """ALFWorld's rooms put some receptacles at one location: standing at one, the agent
    reaches them all, ``look`` names them all, and ``go to`` another of them does nothing."""
    for index in range(6):
        game = generate_game("valid_unseen", index)
        shared = lambda p, ids, g=game: _share(p, g, group)  # noqa: E731
        data = _edited(game, shared)
        read = native_game(data)
        assert len(read.house.colocated) == 1 and len(read.house.colocated[0]) == group
        first, second = read.house.colocated[0][:2]
        probe = [f"go to {first}", f"go to {second}", "look", f"examine {second}", f"open {second}"]
        probe += [f"go to {read.house.receptacles[-1]}", f"go to {second}", "look"]
        _differential(read, data, probe)
        assert _differential(read, data, expert_plan(read)), "the expert wins where receptacles share a location"
        _differential(read, data, _walk(read, index, length=24))


def _share(problem: str, game, group: int) -> str:
    """The problem with the room's first ``group`` receptacles at the first one's location."""
    for number in range(1, group):
        problem = problem.replace(_location(problem, game, number), _location(problem, game, 0))
    return problem


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda p, ids, g: p.replace("(atLocation agent1 loc_bar_0)", "(atLocation agent1 loc_bar_1)"), "starts at"),
        (lambda p, ids, g: p.replace("(:init\n", f"(:init\n  (isOn {ids[g.house.objects[0]]})\n"), "on at the start"),
        (lambda p, ids, g: p.replace("(:init\n", "(:init\n  (holdsAny agent1)\n"), "holds something"),
        (
            lambda p, ids, g: p.replace(
                "(:init\n", f"(:init\n  (inReceptacleObject {ids[g.house.objects[0]]} {ids[g.house.objects[1]]})\n"
            ),
            "inside an object",
        ),
        (lambda p, ids, g: re.sub(rf"\(inReceptacle {re.escape(ids[g.house.objects[0]])} [^)]*\)", "", p), "floor"),
        (lambda p, ids, g: p.replace("(:init\n", "(:init\n  (isDirty agent1)\n"), "no rule for: \\(isdirty agent1\\)"),
    ],
    ids=["agent-at-receptacle", "lamp-on", "holding", "nested", "on-the-floor", "unknown-fact"],
)
def test_what_the_native_engine_cannot_represent_is_refused_by_name(edit, reason: str) -> None:
    game = generate_game("valid_seen", 1)
    data = _edited(game, lambda p, ids: edit(p, ids, game))
    with pytest.raises(UnsupportedGame, match=reason):
        native_game(data)


def _location(problem: str, game, number: int) -> str:
    """The ``receptacleAtLocation`` fact of the room's ``number``-th receptacle."""
    ids = entity_ids(game)
    found = re.search(
        rf"\(receptacleAtLocation {re.escape(ids[game.house.receptacles[number]])} (loc_bar_\d+)\)", problem
    )
    assert found is not None
    return found[1] + ")"


def test_every_alfworld_game_file_plays_natively_as_alfworld_plays_it() -> None:
    """With ALFWorld's data at hand: every file of its three splits the native engine reads is
    played in both engines (the expert's plan, a random walk); the refused ones are counted."""
    from cola_gym.tasks.household.alfworld import ALFWORLD_GAMES, alfworld_split_files, load_game_file

    # importing ALFWorld sets $ALFWORLD_DATA to its cache folder: look for the games themselves
    if not (Path(os.environ.get("ALFWORLD_DATA", "/nonexistent")) / ALFWORLD_GAMES).is_dir():
        pytest.skip("ALFWorld's data set is not here ($ALFWORLD_DATA/json_2.1.1)")

    played, refused = 0, {}
    for split in ("valid_seen", "valid_unseen", "train"):
        for game_file in alfworld_split_files(split):
            try:
                game = load_native_game(game_file)
            except UnsupportedGame as err:
                refused[game_file.path] = str(err)
                continue
            data = load_game_file(game_file.path)
            assert _differential(game, data, expert_plan(game)), game_file.path
            _differential(game, data, _walk(game, played))
            played += 1
    assert played, f"the native engine read none of ALFWorld's games: {list(refused.values())[:5]}"


def test_malformed_files_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        parse_sexpression("(define (problem p)")
    with pytest.raises(ValueError, match="unbalanced"):
        parse_sexpression("(a))")
    with pytest.raises(ValueError, match="no 'pddl_problem'"):
        native_game({"grammar": ""})
    with pytest.raises(ValueError, match="define"):
        native_game({"pddl_problem": "(problem p)"})
    data = tw_pddl_game(generate_game("valid_seen", 0))
    data["grammar"] = ""
    with pytest.raises(UnsupportedGame, match="sentence"):
        native_game(data)
    with pytest.raises(FileNotFoundError):
        load_native_game(tmp_path / "missing.tw-pddl")


def test_names_are_alfworlds_demangled_names() -> None:
    """The first sorted id of a class gets the highest number; basins keep ``basin``."""
    names = demangled_names(
        ["cabinet_bar__minus_01_dot_00", "cabinet_bar__plus_02_dot_00", "sink_bar_01_bar_sinkbasin", "appletype"]
    )
    assert names == {
        "cabinet_bar__minus_01_dot_00": "cabinet 2",
        "cabinet_bar__plus_02_dot_00": "cabinet 1",
        "sink_bar_01_bar_sinkbasin": "sinkbasin 1",
    }


def _write_split(root: Path, split: str, games) -> list[Path]:
    paths = []
    for index, game in enumerate(games):
        folder = root / "json_2.1.1" / split / f"{game.goal.task_type}-x-None-y-{index}" / "trial_1"
        folder.mkdir(parents=True)
        (folder / "game.tw-pddl").write_text(json.dumps(tw_pddl_game(game)))
        paths.append(folder / "game.tw-pddl")
    return paths


def test_envs_play_game_files_natively_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_cola_dir
) -> None:
    """``game_files`` plays natively; ``game_files="alfworld"`` is the split under $ALFWORLD_DATA
    as ALFWorld filters it; an unsupported file is refused with its path, or skipped."""
    from cola_gym.tasks.household.task import HouseholdTask

    games = [generate_game("valid_unseen", i) for i in range(4)]
    paths = _write_split(tmp_path, "valid_unseen", games)
    movable = tmp_path / "json_2.1.1" / "valid_unseen" / "pick_and_place_with_movable_recep-x" / "trial_1"
    movable.mkdir(parents=True)
    (movable / "game.tw-pddl").write_text(paths[0].read_text())
    unsolvable = json.loads(paths[1].read_text()) | {"solvable": False}
    (paths[1].parent.parent / "trial_2").mkdir()
    (paths[1].parent.parent / "trial_2" / "game.tw-pddl").write_text(json.dumps(unsolvable))
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))

    task = HouseholdTask(split="valid_unseen", game_files="alfworld")
    order = [f.path for f in task.game_files]
    assert sorted(order) == sorted(map(str, paths)), "ALFWorld's filters: no movable variants, only solvable games"
    at = order.index(str(paths[2]))
    played = task.game(at)
    assert played.name == str(paths[2]) and played.goal == games[2].goal and played.index == at
    assert type(task.backend).__name__ == "NativeBackend"

    env = gym.make("CoLA-ALFWorld-v0", model=str(tiny_cola_dir), split="valid_unseen", game_files="alfworld")
    _, info = env.reset(options={"task_index": order.index(str(paths[1]))})
    assert info["task_type"] == games[1].goal.task_type
    assert sorted(info["admissible_commands"]) == admissible_commands(games[1], games[1].start)

    at_a_receptacle = _edited(
        games[3], lambda p, ids: p.replace("(atLocation agent1 loc_bar_0)", "(atLocation agent1 loc_bar_1)")
    )
    paths[3].write_text(json.dumps(at_a_receptacle))
    strict = HouseholdTask(split="valid_unseen", game_files=[str(p) for p in paths])
    with pytest.raises(UnsupportedGame, match=rf"{re.escape(str(paths[3]))}.*starts at.*backend='alfworld'"):
        strict.game(3)
    skipping = HouseholdTask(split="valid_unseen", game_files=[str(p) for p in paths], unsupported_games="skip")
    assert sorted(f.path for f in skipping.game_files) == sorted(str(p) for p in paths[:3])
    with pytest.raises(ValueError, match="unsupported_games"):
        HouseholdTask(game_files=[str(paths[0])], unsupported_games="maybe")
    monkeypatch.delenv("ALFWORLD_DATA")
    with pytest.raises(FileNotFoundError, match="ALFWORLD_DATA"):
        HouseholdTask(split="valid_unseen", game_files="alfworld")
