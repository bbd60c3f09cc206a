"""The real ALFWorld as a backend: our games as ALFRED PDDL problems, played by TextWorld.

Needs ``pip install 'cola-gym[alfworld]'`` (ALFWorld 0.4.2 with TextWorld's PDDL engine).
:func:`tw_pddl_game` writes a :class:`~cola_gym.tasks.household.world.Game` as the JSON game ALFWorld
reads (``game.tw-pddl``): ALFWorld's own domain (``alfred.pddl``) and grammar
(``alfred.twl2``) from the installed package, a problem listing the room's receptacles (one
location each), objects, their properties (as ALFRED states them: heatable, coolable,
cleanable, sliceable, toggleable), every ``canContain`` pair of ALFRED's table, and ALFWorld's goal
for the task type. Object ids are chosen so that ALFWorld's name demangler gives our names
(``apple 2``, ``sinkbasin 1``). :class:`AlfworldBackend` plays such games, or real ALFWorld
game files (:func:`load_game_file`), through ALFWorld's wrappers.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cola_gym.tasks.household.backends import Backend, Reply
from cola_gym.tasks.household.vocabulary import (
    LAMPS,
    OBJECT_CLASSES,
    OPENABLE,
    RECEPTACLE_OBJECTS,
    alfred_id_prefix,
    alfred_name,
    can_hold,
)
from cola_gym.tasks.household.world import Game, GameFile, class_of

INSTALL_HINT = "the ALFWorld backend needs ALFWorld: pip install 'cola-gym[alfworld]'"


def _alfworld() -> tuple[Any, Any, Any]:
    """``(alfworld.info, goal_library, textworld)``, with a clear error when missing."""
    try:
        import textworld
        from alfworld import info
        from alfworld.gen import goal_library
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return info, goal_library, textworld


def entity_ids(game: Game) -> dict[str, str]:
    """PDDL ids of the game's receptacles and objects, by our name.

    ALFWorld's demangler numbers the instances of a class over the sorted ids, the first id
    getting the highest number, and appends ``basin`` to names whose id contains it.
    """
    names = (*game.house.receptacles, *game.house.objects)
    counts = Counter(class_of(name) for name in names)
    ids = {}
    for name in names:
        cls, number = class_of(name), int(name.rsplit(" ", 1)[1])
        rank = counts[cls] + 1 - number
        base, prefix = alfred_name(cls), alfred_id_prefix(cls)
        # basins: "Sink" + "basin", as in ALFRED's ids (Sink|...|SinkBasin)
        ids[name] = f"{prefix}_bar_{rank:02d}" + (f"_bar_{base}" if prefix != cls else "")
    return ids


def pddl_problem(game: Game, goal_pddl: str) -> str:
    """The game's ALFRED PDDL problem; ``goal_pddl`` is ALFWorld's goal for its task type."""
    house, start = game.house, game.start
    ids = entity_ids(game)
    rtypes = sorted(alfred_name(c) + "Type" for c in RECEPTACLE_OBJECTS)
    otypes = sorted(alfred_name(c) + "Type" for c in (*OBJECT_CLASSES, *LAMPS))
    locations = {r: f"loc_bar_{i + 1}" for i, r in enumerate(house.receptacles)}
    facts = ["(atLocation agent1 loc_bar_0)"]
    for receptacle in house.receptacles:
        rid = ids[receptacle]
        facts += [
            f"(receptacleType {rid} {alfred_name(class_of(receptacle))}Type)",
            f"(receptacleAtLocation {rid} {locations[receptacle]})",
        ]
        if class_of(receptacle) in OPENABLE:
            facts.append(f"(openable {rid})")
    for obj, where in zip(house.objects, start.places, strict=True):
        oid, cls = ids[obj], class_of(obj)
        assert where is not None
        facts += [
            f"(objectType {oid} {alfred_name(cls)}Type)",
            f"(inReceptacle {oid} {ids[where]})",
            f"(objectAtLocation {oid} {locations[where]})",
        ]
        if cls in LAMPS:
            facts.append(f"(toggleable {oid})")
            continue
        facts.append(f"(pickupable {oid})")
        properties = OBJECT_CLASSES[cls]
        facts += [
            f"({flag} {oid})"
            for flag, able in (
                ("heatable", properties.heatable),
                ("coolable", properties.coolable),
                ("cleanable", properties.cleanable),
                ("sliceable", properties.sliceable),
            )
            if able
        ]
    facts += [
        f"(canContain {alfred_name(r)}Type {alfred_name(o)}Type)"
        for r in sorted(RECEPTACLE_OBJECTS)
        for o in sorted(OBJECT_CLASSES)
        if can_hold(r, o)
    ]
    objects = (
        ["agent1 - agent"]
        + [f"{t} - rtype" for t in rtypes]
        + [f"{t} - otype" for t in otypes]
        + [f"{loc} - location" for loc in ["loc_bar_0", *locations.values()]]
        + [f"{ids[r]} - receptacle" for r in house.receptacles]
        + [f"{ids[o]} - object" for o in house.objects]
    )
    return (
        f"(define (problem plan_{_safe(game.name) or 'custom'})\n(:domain alfred)\n(:objects\n  "
        + "\n  ".join(objects)
        + "\n)\n(:init\n  "
        + "\n  ".join(facts)
        + "\n)\n"
        + goal_pddl
    )


def tw_pddl_game(game: Game) -> dict[str, Any]:
    """The game as ALFWorld's ``game.tw-pddl`` JSON object (domain, grammar, problem)."""
    info, goal_library, _ = _alfworld()
    goal = game.goal
    template = goal_library.gdict[goal.task_type]["pddl"]
    goal_pddl = template.format(
        obj=alfred_name(goal.obj),
        recep=alfred_name(goal.recep) if goal.recep else "",
        toggle=alfred_name(goal.toggle) if goal.toggle else "",
    ).replace("#", "-")
    # the goal templates close the problem's "(define" themselves
    grammar = Path(info.ALFRED_TWL2_PATH).read_text().replace("UNKNOWN GOAL", goal.sentence)
    return {
        "pddl_domain": Path(info.ALFRED_PDDL_PATH).read_text(),
        "grammar": grammar,
        "pddl_problem": pddl_problem(game, goal_pddl),
        "solvable": True,
        "walkthrough": None,
    }


def _resolve(path: str | os.PathLike[str]) -> Path:
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and not candidate.exists() and os.environ.get("ALFWORLD_DATA"):
        candidate = Path(os.environ["ALFWORLD_DATA"]) / candidate
    return candidate


def find_game_files(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[GameFile]:
    """Game files under ``paths`` (files, or folders searched recursively for ``*.tw-pddl``;
    relative paths may be relative to ``$ALFWORLD_DATA``), sorted.

    Raises:
        FileNotFoundError: a path does not exist, or no game file is found.
    """
    entries = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    found: list[Path] = []
    for entry in entries:
        candidate = _resolve(entry)
        if candidate.is_dir():
            found += sorted(candidate.rglob("*.tw-pddl"))
        elif candidate.is_file():
            found.append(candidate)
        else:
            raise FileNotFoundError(f"ALFWorld game path {candidate} does not exist (a path, or set $ALFWORLD_DATA)")
    if not found:
        raise FileNotFoundError(f"no *.tw-pddl game file under {[str(e) for e in entries]}")
    return [GameFile(str(path)) for path in found]


ALFWORLD_GAMES = "json_2.1.1"
"""The folder of ALFWorld's game files under ``$ALFWORLD_DATA`` (``alfworld-download``)."""


def alfworld_split_files(split: str) -> list[GameFile]:
    """ALFWorld's own games of ``split`` (``train``, ``valid_seen``, ``valid_unseen``) under
    ``$ALFWORLD_DATA/json_2.1.1``, filtered as ALFWorld's ``AlfredTWEnv`` filters them: no
    folder with ``movable`` or ``Sliced`` in its path, only games marked solvable.

    Raises:
        FileNotFoundError: ``$ALFWORLD_DATA`` is not set, or it has no such split.
    """
    root = os.environ.get("ALFWORLD_DATA")
    if not root:
        raise FileNotFoundError("game_files='alfworld' reads $ALFWORLD_DATA: set it to ALFWorld's data folder")
    folder = Path(root).expanduser() / ALFWORLD_GAMES / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: ALFWorld's {split} games are not under $ALFWORLD_DATA")
    games = []
    for game_file in find_game_files(folder):
        relative = Path(game_file.path).relative_to(folder)
        if any("movable" in part or "Sliced" in part for part in relative.parts):
            continue
        try:
            solvable = json.loads(Path(game_file.path).read_text()).get("solvable")
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            solvable = False
        if solvable is True:
            games.append(game_file)
    if not games:
        raise FileNotFoundError(f"no solvable game file under {folder}")
    return games


def load_game_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A real ALFWorld game (``game.tw-pddl``), by path, or relative to ``$ALFWORLD_DATA``."""
    candidate = _resolve(path)
    if candidate.is_dir():
        candidate = candidate / "game.tw-pddl"
    if not candidate.is_file():
        raise FileNotFoundError(f"ALFWorld game file {candidate} does not exist (give a path or set $ALFWORLD_DATA)")
    try:
        data = json.loads(candidate.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{candidate} is not an ALFWorld game file: {err}") from err
    missing = {"pddl_domain", "grammar", "pddl_problem"} - set(data)
    if missing:
        raise ValueError(f"{candidate} is not an ALFWorld game file: missing {sorted(missing)}")
    return dict(data)


class AlfworldSession:
    """One live ALFWorld engine on one game, with the commands it has played."""

    def __init__(self, game_data: dict[str, Any]) -> None:
        _, _, textworld = _alfworld()
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
        from textworld.envs.pddl import PddlEnv

        self._data = game_data
        self._env = AlfredDemangler(PddlEnv(textworld.EnvInfos(won=True, admissible_commands=True)))
        self.history: tuple[str, ...] = ()
        self.last: Reply | None = None

    def reset(self) -> Reply:
        self._env.load(self._data)
        state = self._env.reset()
        self.history = ()
        self.last = Reply((), str(state.feedback).strip(), tuple(state["admissible_commands"]), bool(state["won"]))
        return self.last

    def play(self, command: str) -> Reply:
        state, _, _ = self._env.step(command)
        self.history = (*self.history, command)
        self.last = Reply(
            self.history, str(state.feedback).strip(), tuple(state["admissible_commands"]), bool(state["won"])
        )
        return self.last

    def replay(self, history: Sequence[str]) -> None:
        """Brings the engine to the state after ``history`` (replays from the start if needed)."""
        history = tuple(history)
        if self.history != history[: len(self.history)] or len(self.history) > len(history):
            self.reset()
        for command in history[len(self.history) :]:
            self.play(command)

    def close(self) -> None:
        self._env.close()


class AlfworldBackend(Backend):
    """ALFWorld's TextWorld engine (about 40-150 ms per command). The world is the command
    history; a restored or branched episode is replayed from the start."""

    def __init__(self) -> None:
        _alfworld()
        self._sessions: dict[Game | GameFile, AlfworldSession] = {}

    def _session(self, game: Game | GameFile) -> AlfworldSession:
        if game not in self._sessions:
            if len(self._sessions) >= 8:
                self._sessions.pop(next(iter(self._sessions))).close()
            data = load_game_file(game.path) if isinstance(game, GameFile) else tw_pddl_game(game)
            self._sessions[game] = AlfworldSession(data)
        return self._sessions[game]

    def start(self, game: Game | GameFile) -> Reply:
        return self._session(game).reset()

    def play(self, game: Game | GameFile, world: Any, command: str) -> Reply:
        session = self._session(game)
        session.replay(world)
        return session.play(command)

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._sessions = {}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
