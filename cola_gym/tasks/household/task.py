"""ALFWorld-style household games as a multi-turn task: the agent writes commands, the room answers.

Each turn the agent's latent actions write one command; the turn ends at the end of the
line (or at an end-of-turn token, or after :data:`MAX_COMMAND_CHARS` characters). The
engine plays the command and its answer (ALFWorld's text, ``Nothing happens.`` for anything
not admissible) becomes the next user message, appended as one cached prefill. Reward 1 when
the goal holds, which ends the episode; ALFWorld's limit of 50 commands ends it with reward
0. ``info`` has the admissible commands, ``won``, the number of commands (``turns``), the
task type and the last command and answer.

Games come from :mod:`cola_gym.tasks.household` by split (``train``, ``valid_seen``,
``valid_unseen``), task type and index, or from ALFWorld's own game files (``game_files``,
read into native games by :mod:`cola_gym.tasks.household.game_files`); the engine is the
pure-Python one by default, or the real ALFWorld engine (``backend="alfworld"``,
:mod:`cola_gym.tasks.household.alfworld`).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from cola_gym.envs.task import TASK_INDEX, Message, Task, TaskStart, TurnOutcome
from cola_gym.tasks.household import SPLIT_SIZES, SPLITS, Game, expert_plan, generate_game
from cola_gym.tasks.household.alfworld import alfworld_split_files, find_game_files
from cola_gym.tasks.household.backends import Backend, make_backend
from cola_gym.tasks.household.engine import NOTHING_HAPPENS, intro, normalize_command, step
from cola_gym.tasks.household.game_files import UnsupportedGame, load_native_game
from cola_gym.tasks.household.searcher import expert_labels, searching_plan, slipping_plan
from cola_gym.tasks.household.vocabulary import resolve_task_type
from cola_gym.tasks.household.world import GameFile

_GOAL = re.compile(r"Your task is to: (.*?)\.?\s*$")

MAX_COMMAND_CHARS = 120
"""A turn with no line break by this length ends anyway (a command is at most ~60 characters)."""

DEMO_EXPERTS = ("oracle", "searching", "mixed")
"""Whose games the demonstrations are (:meth:`HouseholdTask.demo_commands`)."""

MIXED_SEED = 20_260_605
"""Seeds the mixed demonstrations' draws (with the game's index): the same data every run."""

MIXED_STYLES = ("oracle", "searching", "slipping")
"""The styles of ``demo_expert="mixed"``, one drawn per game."""

SLIP_RATE = 0.25
"""How often the slipping style plays a random admissible command instead of the expert's."""

INSTRUCTION = (
    "You are a household robot. Each turn, reply with one command, such as: go to X, open X, close X, "
    "take A from X, move A to X, use X, heat A with X, cool A with X, clean A with X, examine X, "
    "inventory, look."
)
"""The system message of every household episode."""


@dataclass(frozen=True)
class HouseholdState:
    """An episode: the game, the engine's state, commands played, the last exchange."""

    game: Game | GameFile
    world: Any
    task_type: str
    goal: str
    turns: int = 0
    commands: tuple[str, ...] = ()
    invalid: int = 0
    won: bool = False
    admissible: tuple[str, ...] = ()
    command: str = ""
    feedback: str = ""


class HouseholdTask(Task[HouseholdState]):
    """ALFWorld's household games (six task types) played by commands.

    Args:
        split: ``"train"`` (100,000 procedural games), ``"valid_seen"`` (140 games in training
            rooms) or ``"valid_unseen"`` (134 games in held-out rooms).
        task_type: one of ALFWorld's six types (or its ReAct short name: ``put``, ``examine``,
            ``clean``, ``heat``, ``cool``, ``puttwo``); ``None``: all six in turn.
        max_commands: commands per episode (ALFWorld: 50).
        backend: ``"native"`` (this package's engine) or ``"alfworld"`` (ALFWorld's own
            TextWorld engine on the same games; ``pip install 'cola-gym[alfworld]'``).
        game_files: real ALFWorld games instead of generated ones: ``*.tw-pddl`` files or
            folders searched recursively for them (relative to ``$ALFWORLD_DATA`` when not found
            here), or ``"alfworld"`` for ALFWorld's own ``split`` under ``$ALFWORLD_DATA``
            (``json_2.1.1/<split>``, the games ALFWorld itself plays: solvable, no movable or
            sliced variants). The native engine plays them (each read once into a native game);
            a game it cannot represent raises :class:`~cola_gym.tasks.household.game_files.UnsupportedGame`
            naming what (``unsupported_games="skip"`` leaves such games out; ``backend="alfworld"``
            plays them all). ``task_type`` filters them by the type each game states (its
            ``traj_data.json``, else its PDDL goal; never its folder's name).
        unsupported_games: ``"error"`` (a game file the native engine cannot represent raises
            when it is reset) or ``"skip"`` (every file is read at construction and those are
            left out).
        invalid_command_penalty: reward subtracted for each command the room answers with
            ``Nothing happens.`` (0: none, ALFWorld's own reward).
        lenient_commands: ``False`` (ALFWorld 0.4's rule): a turn's command (its first line,
            surrounding spaces dropped) counts only when written exactly as an admissible
            command; ``True`` forgives case, spacing, a trailing period and the older
            ``put A in/on X`` form (:func:`~cola_gym.tasks.household.engine.normalize_command`).
        demo_expert: whose games :meth:`demonstrations` are: ``"oracle"`` (shortest plans from
            full knowledge), ``"searching"`` (an agent that explores for what it has not seen,
            :mod:`~cola_gym.tasks.household.searcher`) or ``"mixed"`` (per game, one of the two
            or the searching expert with slips: random admissible commands a quarter of the
            time, then recovery, :func:`~cola_gym.tasks.household.searcher.slipping_plan`; the
            slips stay in the transcript but are never targets); the micro tier's data, so that
            a cloned prior wins some games and leaves room.

    Reset options: ``task_index``; ``{"game": Game}`` plays a game of your own.

    Branching cost: the native engine's world is a frozen value, so snapshots and tree search
    branch for free. ALFWorld's TextWorld engine cannot be copied, so its world is the command
    history and the backend replays it from the start whenever an episode continues from
    another branch: a search of depth ``n`` pays O(n) engine commands per switch, O(n^2) in all.
    """

    info_keys: ClassVar[tuple[str, ...]] = (
        "admissible_commands",
        "won",
        "turns",
        "commands",
        "invalid_commands",
        "task_type",
        "goal",
        "command",
        "feedback",
    )
    option_keys: ClassVar[tuple[str, ...]] = ("game",)
    option_aliases: ClassVar[Mapping[str, str]] = {"game_index": TASK_INDEX}

    def __init__(
        self,
        split: str = "valid_seen",
        task_type: str | None = None,
        max_commands: int = 50,
        backend: str = "native",
        game_files: str | Sequence[str] | None = None,
        unsupported_games: str = "error",
        invalid_command_penalty: float = 0.0,
        lenient_commands: bool = False,
        demo_expert: str = "oracle",
    ) -> None:
        self.lenient_commands = bool(lenient_commands)
        if demo_expert not in DEMO_EXPERTS:
            raise ValueError(f"demo_expert must be one of {list(DEMO_EXPERTS)}, got {demo_expert!r}")
        self.demo_expert = demo_expert
        if not invalid_command_penalty >= 0:
            raise ValueError(f"invalid_command_penalty must be >= 0, got {invalid_command_penalty!r}")
        self.invalid_command_penalty = float(invalid_command_penalty)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if max_commands < 1:
            raise ValueError(f"max_commands must be >= 1, got {max_commands}")
        self.split = split
        self.task_type = None if task_type is None else resolve_task_type(task_type)
        self.max_commands = int(max_commands)
        self.backend: Backend = make_backend(backend)
        self.native_files = backend == "native"
        self.game_files: tuple[GameFile, ...] = ()
        if unsupported_games not in ("error", "skip"):
            raise ValueError(f"unsupported_games must be 'error' or 'skip', got {unsupported_games!r}")
        if game_files is not None:
            found = alfworld_split_files(split) if game_files == "alfworld" else find_game_files(game_files)
            self.game_files = tuple(f for f in found if self.task_type in (None, f.task_type))
            if not self.game_files:
                raise ValueError(f"none of the {len(found)} game files is a {self.task_type} game")
            if self.native_files and unsupported_games == "skip":
                self.game_files = tuple(f for f in self.game_files if _native_supported(f))
                if not self.game_files:
                    raise ValueError("the native engine can play none of these game files: use backend='alfworld'")

    @property
    def num_tasks(self) -> int:
        return len(self.game_files) or SPLIT_SIZES[self.split]

    def game(self, index: int) -> Game | GameFile:
        """Game ``index`` of this task's split and type (or of its game files)."""
        if self.game_files:
            game_file = self.game_files[index]
            return (
                replace(load_native_game(game_file), split=self.split, index=index) if self.native_files else game_file
            )
        return generate_game(self.split, index, self.task_type)

    def check_options(self, options: Any) -> dict[str, Any]:
        checked = super().check_options(options)
        if "game" in checked:
            if not isinstance(checked["game"], Game):
                raise ValueError(
                    f"options['game'] must be a cola_gym.tasks.household.Game, got {type(checked['game']).__name__}"
                )
            if TASK_INDEX in checked:
                raise ValueError(f"give either options['game'] or options['{TASK_INDEX}'], not both")
        return checked

    def begin(self, options: Mapping[str, Any], rng: np.random.Generator) -> TaskStart[HouseholdState]:
        game, index = options.get("game"), -1  # a game posed by hand has no index here
        if game is None:
            index = options[TASK_INDEX] if TASK_INDEX in options else int(rng.integers(self.num_tasks))
            game = self.game(index)
        reply = self.backend.start(game)
        if isinstance(game, Game):
            task_type, goal = game.goal.task_type, game.goal.sentence
        else:
            found = _GOAL.search(reply.text)
            task_type, goal = game.task_type, found.group(1) if found else ""
        state = HouseholdState(game, reply.world, task_type, goal, admissible=reply.admissible, feedback=reply.text)
        return TaskStart(state, tuple(self.prompt(reply.text)), index)

    @staticmethod
    def prompt(observation: str) -> list[Message]:
        """The opening messages: the instruction, then the game's first observation."""
        return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": observation}]

    def turn_complete(self, state: HouseholdState, turn_text: str) -> bool:
        text = turn_text.lstrip()
        return "\n" in text or len(text) >= MAX_COMMAND_CHARS

    def end_turn(self, state: HouseholdState, turn_text: str) -> TurnOutcome[HouseholdState]:
        command = command_of(turn_text, lenient=self.lenient_commands)
        reply = self.backend.play(state.game, state.world, command)
        turns, invalid = state.turns + 1, reply.text == NOTHING_HAPPENS
        after = replace(
            state,
            world=reply.world,
            turns=turns,
            commands=(*state.commands, command),
            invalid=state.invalid + invalid,
            won=reply.won,
            admissible=reply.admissible,
            command=command,
            feedback=reply.text,
        )
        penalty = -self.invalid_command_penalty if invalid else 0.0
        if reply.won:
            return TurnOutcome(after, reward=1.0 + penalty, success=True)
        if turns >= self.max_commands:
            return TurnOutcome(after, reward=penalty, success=False)
        return TurnOutcome(after, reward=penalty, terminated=False, next_message=reply.text)

    def info(self, state: HouseholdState) -> dict[str, Any]:
        return {
            "admissible_commands": list(state.admissible),
            "won": state.won,
            "turns": state.turns,
            "commands": state.commands,
            "invalid_commands": state.invalid,
            "task_type": state.task_type,
            "goal": state.goal,
            "command": state.command,
            "feedback": state.feedback,
        }

    def anchor(self, state: HouseholdState) -> Hashable:
        """The game and its world state (for ALFWorld's engine, the commands played so far)."""
        return (state.game.name, state.world)

    def describe(self, state: HouseholdState) -> str:
        about = f"{state.game.name} ({state.task_type}): {state.goal}"
        if not isinstance(state.game, Game):
            return about
        return f"{about}\n\nexpert plan: {'; '.join(expert_plan(state.game))}"

    def demonstrations(self) -> Iterable[tuple[Sequence[Message], str]]:
        """The expert's games as chats: one example per command, with the transcript so far."""
        if self.game_files:
            raise ValueError("the expert plays generated games only")
        for index in range(self.num_tasks):
            game = generate_game(self.split, index, self.task_type)
            yield from labelled_chats(game, *self.demo_game(game, index))

    def demo_commands(self, game: Game, index: int) -> list[str]:
        """The demonstration of game ``index``: its commands in the style of ``demo_expert``."""
        return self.demo_game(game, index)[0]

    def demo_game(self, game: Game, index: int) -> tuple[list[str], list[str | None]]:
        """The demonstration of game ``index`` (its commands in the style of ``demo_expert``)
        and what a cloned policy learns from it: the same commands, except a slip's (``None``),
        which stays in the transcript the recovery is learned from but is never a target."""
        style = self.demo_expert
        rng = np.random.default_rng((MIXED_SEED, index))
        if style == "mixed":
            style = MIXED_STYLES[int(rng.integers(len(MIXED_STYLES)))]
        if style == "oracle":
            commands = expert_plan(game)
        elif style == "searching":
            commands = searching_plan(game)
        else:
            commands = slipping_plan(game, rng, SLIP_RATE, limit=self.max_commands)
            expert = expert_labels(game, commands)[:-1]
            return commands, [c if c == e else None for c, e in zip(commands, expert, strict=True)]
        return commands, list(commands)


def command_of(turn_text: str, lenient: bool = False) -> str:
    """The command a turn writes: its first non-empty line without surrounding spaces (and
    normalized by :func:`~cola_gym.tasks.household.engine.normalize_command` when ``lenient``)."""
    for line in turn_text.splitlines():
        if line.strip():
            return normalize_command(line) if lenient else line.strip()
    return ""


def expert_chats(game: Game) -> Iterable[tuple[list[Message], str]]:
    """The expert's play of ``game`` as (messages so far, next command), one per command."""
    return labelled_chats(game, expert_plan(game))


def expert_transcript(game: Game) -> list[Message]:
    """The expert's whole game as a chat: instruction, intro, then command / answer turns,
    ending with the winning command (the env ends the episode there)."""
    return game_transcript(game, expert_plan(game))


def game_transcript(game: Game, commands: Sequence[str]) -> list[Message]:
    """``commands`` played in ``game`` as a chat: instruction, intro, then command / answer
    turns (no answer after a winning command: the env ends the episode there)."""
    messages = HouseholdTask.prompt(intro(game))
    world = game.start
    for command in commands:
        result = step(game, world, command)
        world = result.state
        messages.append({"role": "assistant", "content": command})
        if not result.won:
            messages.append({"role": "user", "content": result.feedback})
    return messages


def labelled_chats(
    game: Game, commands: Sequence[str], labels: Sequence[str | None] | None = None
) -> Iterator[tuple[list[Message], str]]:
    """(messages after each prefix of ``commands``, the next command): ``commands`` themselves
    by default (an expert's game), or ``labels`` (DAgger: another policy's play labelled by an
    expert; ``None`` labels, where the game is won, give no example)."""
    transcript = game_transcript(game, commands)
    targets = list(commands) if labels is None else list(labels)
    for turn, target in enumerate(targets):
        if target is not None:
            yield transcript[: 2 + 2 * turn], target


def _native_supported(game_file: GameFile) -> bool:
    try:
        load_native_game(game_file)
    except UnsupportedGame:
        return False
    return True
