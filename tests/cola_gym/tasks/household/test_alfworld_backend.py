"""The real ALFWorld engine against ours, on the same generated games (differential test)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cola_gym.tasks.household import (
    TASK_TYPES,
    admissible_commands,
    expert_plan,
    generate_game,
    intro,
    normalize_command,
    step,
)
from cola_gym.tasks.household.alfworld import AlfworldSession, load_game_file, tw_pddl_game

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
