"""Household games: engine speed against the real ALFWorld, env speed, and the default model's success.

Four parts, each written to the JSON as soon as it is done (a rerun skips finished parts and
finished success runs, so a stopped benchmark resumes):

- ``engine``: commands per second of our engine and of ALFWorld's TextWorld engine on the
  same generated games and the same commands (the expert's plan, then random admissible
  and non-admissible commands), each answering with its text, admissible commands and
  ``won``; and the cost of starting a game. Target: ours >= 500x faster per command.
- ``files``: both engines on the same ALFWorld game files (``--game-files``): loading a file
  and starting its game (ours: reading it into a native game), then commands. Targets: ours
  >= 1,000x per command and >= 10,000x per load.
- ``env``: latent-action tokens per second of a household env (one and eight games, random
  actions, the room's answers prefilled at every line break) against Hugging Face
  ``generate`` of the same decoder on the same prompts, measured side by side; and the
  tokens the decoder reads per env token (the env's own plus the room's answers).
- ``success``: the default household model's policy prior, greedy and sampled (``--modes``;
  ``greedy-token`` also takes the most probable token's code instead of the argmax code), on
  ``--games`` valid-seen and valid-unseen games (all six task types in turn), per task
  type, within ``--max-tokens`` (256: about 25 commands; the ids allow 512), beside the
  expert's (which wins every game, by construction and by test).

    python benchmarks/household.py                    # all parts (success needs the default model)
    python benchmarks/household.py --parts engine     # only the engine comparison (needs ALFWorld)
    python benchmarks/household.py --parts files --game-files "$ALFWORLD_DATA/json_2.1.1/valid_seen"
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from _report import pyplot, save_figure, write_report

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.tasks.household import TASK_TYPES, admissible_commands, expert_plan, generate_game, step
from cola_gym.tasks.household.backends import NativeBackend
from cola_gym.tasks.household.vocabulary import SHORT_NAMES

MODES: dict[str, tuple[bool, Literal["code", "token"]]] = {
    "greedy": (True, "code"),
    "greedy-token": (True, "token"),
    "sampled": (False, "code"),
}
"""Success modes: ``deterministic`` and ``greedy`` of the prior agent (greedy-token: the most
probable token's code, see :class:`~cola_agents.PriorAgent`)."""
SPLITS = ("seen", "unseen")
TIERS = {
    "default": {"seen": "CoLA-ALFWorld-v0", "unseen": "CoLA-ALFWorld-Unseen-v0"},
    "micro": {"seen": "CoLA-Micro-ALFWorld-v0", "unseen": "CoLA-Micro-ALFWorld-Unseen-v0"},
}
"""The ids each tier plays, by split: the default household model or the micro tier's."""


def command_script(game: Any, extra: int, seed: int) -> list[str]:
    """The expert's plan, then ``extra`` random commands (admissible or not)."""
    rng = np.random.default_rng(seed)
    commands = expert_plan(game)
    state = game.start
    for command in commands:
        state = step(game, state, command).state
    for _ in range(extra):
        command = str(rng.choice([*admissible_commands(game, state), "go to nowhere 1", "dance"]))
        commands.append(command)
        state = step(game, state, command).state
    return commands


def alfworld_seconds_per_command(session: Any, script: list[str]) -> float:
    """Plays ``script`` in a started ALFWorld session (then closes it): seconds per command."""
    started = time.perf_counter()
    for command in script:
        session.play(command)
    seconds = (time.perf_counter() - started) / len(script)
    session.close()
    return seconds


def engine_part(args: argparse.Namespace) -> dict[str, Any]:
    from cola_gym.tasks.household.alfworld import AlfworldSession, tw_pddl_game

    games = [generate_game("valid_seen", i) for i in range(args.engine_games)]
    scripts = [command_script(game, 10, i) for i, game in enumerate(games)]
    native = NativeBackend()
    ours_start, ours_step, theirs_start, theirs_step, commands = [], [], [], [], 0
    for game, script in zip(games, scripts, strict=True):
        started = time.perf_counter()
        for _ in range(args.native_repeats):
            reply = native.start(game)
            world = reply.world
            for command in script:
                world = native.play(game, world, command).world
        per_game = (time.perf_counter() - started) / args.native_repeats
        started = time.perf_counter()
        for _ in range(args.native_repeats):
            native.start(game)
        ours_start.append((time.perf_counter() - started) / args.native_repeats)
        ours_step.append((per_game - ours_start[-1]) / len(script))

        session = AlfworldSession(tw_pddl_game(game))
        started = time.perf_counter()
        session.reset()
        theirs_start.append(time.perf_counter() - started)
        theirs_step.append(alfworld_seconds_per_command(session, script))
        commands += len(script)
    ours, theirs = statistics.mean(ours_step), statistics.mean(theirs_step)
    return {
        "games": len(games),
        "commands": commands,
        "ours_seconds_per_command": ours,
        "alfworld_seconds_per_command": theirs,
        "ours_commands_per_s": 1 / ours,
        "alfworld_commands_per_s": 1 / theirs,
        "ours_seconds_per_start": statistics.mean(ours_start),
        "alfworld_seconds_per_start": statistics.mean(theirs_start),
        "speedup_per_command": theirs / ours,
        "speedup_per_start": statistics.mean(theirs_start) / statistics.mean(ours_start),
    }


def files_part(args: argparse.Namespace) -> dict[str, Any]:
    """Both engines on the same ALFWorld game files: loading a file and starting its game, then
    the expert's plan and random commands. ``--game-files`` (e.g. ``$ALFWORLD_DATA``'s
    ``json_2.1.1/valid_seen``); without it, the first ``--engine-games`` valid-seen games
    written as game files."""
    import tempfile

    from cola_gym.tasks.household.alfworld import AlfworldSession, find_game_files, load_game_file, tw_pddl_game
    from cola_gym.tasks.household.game_files import UnsupportedGame, _load, load_native_game

    folder = None
    if args.game_files:
        paths = [f.path for f in find_game_files(args.game_files)][: args.engine_games]
    else:
        folder = tempfile.TemporaryDirectory()
        paths = []
        for index in range(args.engine_games):
            path = Path(folder.name) / f"game-{index}.tw-pddl"
            path.write_text(json.dumps(tw_pddl_game(generate_game("valid_seen", index))))
            paths.append(str(path))
    native = NativeBackend()
    ours_load, ours_start, ours_step, theirs_load, theirs_step, refused, commands = [], [], [], [], [], {}, 0
    for index, path in enumerate(paths):
        _load.cache_clear()
        started = time.perf_counter()
        try:
            game = load_native_game(path)
        except UnsupportedGame as err:
            refused[path] = str(err)
            continue
        native.start(game)
        ours_load.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(args.native_repeats):  # a later episode of the same game: the read game is kept
            native.start(load_native_game(path))
        ours_start.append((time.perf_counter() - started) / args.native_repeats)
        script = command_script(game, 10, index)
        started = time.perf_counter()
        for _ in range(args.native_repeats):
            world = native.start(game).world
            for command in script:
                world = native.play(game, world, command).world
        ours_step.append((time.perf_counter() - started) / args.native_repeats / len(script))

        started = time.perf_counter()
        session = AlfworldSession(load_game_file(path))
        session.reset()
        theirs_load.append(time.perf_counter() - started)
        theirs_step.append(alfworld_seconds_per_command(session, script))
        commands += len(script)
    if folder is not None:
        folder.cleanup()
    if not ours_step:
        raise SystemExit(f"the native engine can play none of the {len(paths)} game files: {refused}")
    ours, theirs = statistics.mean(ours_step), statistics.mean(theirs_step)
    return {
        "source": args.game_files or "valid-seen games written as game files",
        "games": len(ours_step),
        "refused": refused,
        "commands": commands,
        "ours_commands_per_s": 1 / ours,
        "alfworld_commands_per_s": 1 / theirs,
        "ours_seconds_per_load": statistics.mean(ours_load),
        "ours_seconds_per_start": statistics.mean(ours_start),
        "alfworld_seconds_per_load": statistics.mean(theirs_load),
        "speedup_per_command": theirs / ours,
        "speedup_per_load": statistics.mean(theirs_load) / statistics.mean(ours_load),
        "speedup_per_start": statistics.mean(theirs_load) / statistics.mean(ours_start),
    }


def env_part(args: argparse.Namespace) -> dict[str, Any]:
    import gymnasium as gym
    from throughput import time_generate

    env_id = TIERS[args.tier]["seen"]
    kwargs: dict[str, Any] = {} if args.model is None else {"model": args.model}
    probe = gym.make(env_id, **kwargs)
    model = probe.unwrapped.model
    rows: dict[str, Any] = {}
    for batch in args.env_batches:
        prompts = []
        for index in range(batch):
            probe.reset(options={"task_index": index})
            prompts.append(model.tokenizer(probe.unwrapped.prompt_text, add_special_tokens=False)["input_ids"])
        generate = statistics.median(time_generate(model, prompts, args.tokens) for _ in range(args.rounds))
        vector = gym.make_vec(env_id, num_envs=batch, vectorization_mode="vector_entry_point",
                              max_episode_steps=args.tokens + 1, track_policy=args.env_actions == "prior",
                              **kwargs)  # fmt: skip
        stepper, fed = vector.unwrapped.stepper, [0]
        feed = stepper.feed

        def counted_feed(state: Any, feeds: Any, feed: Any = feed, fed: list[int] = fed) -> Any:
            fed[0] += sum(len(f) for f in feeds)  # the env tokens and the room's answers
            return feed(state, feeds)

        stepper.feed = counted_feed
        speeds = []
        for round_number in range(args.rounds):
            vector.reset(options=[{"task_index": i} for i in range(batch)])
            rng = np.random.default_rng(round_number)
            actions = rng.integers(0, vector.single_action_space.n, size=(args.tokens, batch))
            generator = torch.Generator().manual_seed(round_number)
            started = time.perf_counter()
            for step_actions in actions:
                if args.env_actions == "prior":  # what an RL policy starting from the prior plays
                    logits = vector.unwrapped.decoding_state.policy_logits.float()
                    step_actions = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0].numpy()
                vector.step(step_actions)
            speeds.append(batch * args.tokens / (time.perf_counter() - started))
        env_speed = statistics.median(speeds)
        rows[str(batch)] = {"generate_tokens_per_s": generate, "env_tokens_per_s": env_speed,
                            "env/generate": env_speed / generate,
                            "decoder_tokens_per_env_token": fed[0] / (args.rounds * batch * args.tokens)}  # fmt: skip
    return {"tokens": args.tokens, "rounds": args.rounds, "actions": args.env_actions, "batches": rows}


def success_run(split: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    from cola_agents import PriorAgent
    from cola_agents.evaluation import evaluate

    kwargs: dict[str, Any] = {"track_policy": True, "max_episode_steps": args.max_tokens}
    if args.model:
        kwargs["model"] = args.model
    deterministic, greedy = MODES[mode]
    run = evaluate(PriorAgent(seed=0, greedy=greedy), TIERS[args.tier][split], list(range(args.games)),
                   n_envs=args.batch, deterministic=deterministic, show_progress=True, **kwargs)  # fmt: skip
    per_type: dict[str, list[bool]] = {}
    commands: dict[str, list[int]] = {}
    for info, success in zip(run.infos, run.successes, strict=True):
        per_type.setdefault(info["task_type"], []).append(bool(success))
        commands.setdefault(info["task_type"], []).append(int(info["turns"]))
    return {
        "success_rate": run.success_rate,
        "per_type": {t: float(np.mean(v)) for t, v in per_type.items()},
        "games_per_type": {t: len(v) for t, v in per_type.items()},
        "mean_commands": {t: float(np.mean(v)) for t, v in commands.items()},
        "mean_tokens": float(np.mean(run.tokens)),
        "seconds": run.seconds,
    }


def expert_lengths(split: str, games: int) -> dict[str, float]:
    lengths: dict[str, list[int]] = {}
    for index in range(games):
        game = generate_game("valid_seen" if split == "seen" else "valid_unseen", index)
        lengths.setdefault(game.goal.task_type, []).append(len(expert_plan(game)))
    return {t: float(np.mean(v)) for t, v in lengths.items()}


def markdown(report: dict[str, Any]) -> str:
    lines = []
    engine = report.get("engine")
    if engine:
        lines += [
            "| engine | commands/s | s per command | s per game start |",
            "| --- | --- | --- | --- |",
            f"| cola-gym (pure Python) | {engine['ours_commands_per_s']:,.0f} "
            f"| {engine['ours_seconds_per_command']:.2e} | {engine['ours_seconds_per_start']:.2e} |",
            f"| ALFWorld 0.4.2 (TextWorld PDDL) | {engine['alfworld_commands_per_s']:,.1f} "
            f"| {engine['alfworld_seconds_per_command']:.3f} | {engine['alfworld_seconds_per_start']:.2f} |",
            f"| **ratio** | **{engine['speedup_per_command']:,.0f}x** | | {engine['speedup_per_start']:,.0f}x |",
            "",
        ]
    files = report.get("files")
    if files:
        lines += [
            f"Game files: {files['source']} ({files['games']} games, {len(files['refused'])} refused)",
            "",
            "| engine | commands/s | s per first load and start | s per later start of the game |",
            "| --- | --- | --- | --- |",
            f"| cola-gym (file read into a native game) | {files['ours_commands_per_s']:,.0f} "
            f"| {files['ours_seconds_per_load']:.2e} | {files['ours_seconds_per_start']:.2e} |",
            f"| ALFWorld 0.4.2 (TextWorld PDDL) | {files['alfworld_commands_per_s']:,.1f} "
            f"| {files['alfworld_seconds_per_load']:.2f} | {files['alfworld_seconds_per_load']:.2f} |",
            f"| **ratio** | **{files['speedup_per_command']:,.0f}x** | **{files['speedup_per_load']:,.0f}x** "
            f"| **{files['speedup_per_start']:,.0f}x** |",
            "",
        ]
    env = report.get("env")
    if env:
        lines += ["| batch | env tokens/s | generate tokens/s | env / generate | decoder tokens per env token "
                  "| decoder tokens/s / generate |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for batch, row in env["batches"].items():
            fed = row.get("decoder_tokens_per_env_token", float("nan"))
            lines.append(f"| {batch} | {row['env_tokens_per_s']:.1f} | {row['generate_tokens_per_s']:.1f} "
                         f"| {row['env/generate']:.2f} | {fed:.2f} | {row['env/generate'] * fed:.2f} |")  # fmt: skip
        lines.append("")
    success = report.get("success", {})
    modes = [m for m in MODES if any(f"{split}|{m}" in success for split in SPLITS)]
    if success:
        header = "| task type | " + " | ".join(f"{s} {m}" for s in SPLITS for m in modes) + " | expert |"
        lines += [header, "| --- " * (2 + len(SPLITS) * len(modes)) + "|"]
        for task_type in [*TASK_TYPES, "all"]:
            cells = []
            for split in SPLITS:
                for mode in modes:
                    run = success.get(f"{split}|{mode}")
                    if run is None:
                        cells.append("-")
                    elif task_type == "all":
                        cells.append(f"**{run['success_rate']:.0%}**")
                    else:
                        count = run["games_per_type"].get(task_type, 0)
                        cells.append(f"{run['per_type'].get(task_type, 0):.0%} (n={count})")
            name = "all" if task_type == "all" else f"{SHORT_NAMES[task_type]} ({task_type})"
            lines.append(f"| {name} | " + " | ".join(cells) + " | 100% |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    engine = report.get("engine")
    if engine:
        names = ["cola-gym", "ALFWorld"]
        axes[0].bar(
            names, [engine["ours_commands_per_s"], engine["alfworld_commands_per_s"]], color=["#1f77b4", "#888"]
        )
        axes[0].set_yscale("log")
        axes[0].set_ylabel("commands per second (log)")
        axes[0].set_title(f"Engine speed: {engine['speedup_per_command']:,.0f}x on the same games")
    success = report.get("success", {})
    if success:
        x = np.arange(len(TASK_TYPES))
        width = 0.8 / max(1, len(success))
        for n, (key, run) in enumerate(sorted(success.items())):
            values = [100 * run["per_type"].get(t, 0) for t in TASK_TYPES]
            axes[1].bar(x + n * width - 0.4 + width / 2, values, width=width, label=key.replace("|", ", "))
        axes[1].axhspan(10, 70, color="green", alpha=0.08, label="10-70 %: room to learn")
        axes[1].set_xticks(x, [SHORT_NAMES[t] for t in TASK_TYPES])
        axes[1].set_ylim(0, 100)
        axes[1].set_ylabel("success (%)")
        axes[1].set_title(f"{report['model']}: the prior (expert: 100 %)")
        axes[1].legend(fontsize=8)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--parts", nargs="+", choices=("engine", "files", "env", "success"), default=["engine", "env", "success"]
    )
    parser.add_argument("--tier", choices=tuple(TIERS), default="default",
                        help="the household ids (and default model) to measure: full-size or micro")  # fmt: skip
    parser.add_argument("--model", default=None, help="CoLA checkpoint (default: the tier's default model)")
    parser.add_argument("--env-batches", type=int, nargs="+", default=[1, 8], help="env part: games stepped together")
    parser.add_argument("--engine-games", type=int, default=20)
    parser.add_argument("--game-files", default=None,
                        help="files part: ALFWorld game files (a folder searched for *.tw-pddl, or relative to "
                        "$ALFWORLD_DATA); default: valid-seen games written as game files")  # fmt: skip
    parser.add_argument("--native-repeats", type=int, default=50, help="our engine's repeats of each game's script")
    parser.add_argument("--tokens", type=int, default=48, help="env part: tokens per row and measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env-actions", choices=["random", "prior"], default="random",
                        help="env part: uniformly random latent actions (every few tokens end a command), "
                        "or actions sampled from the policy prior (commands as the model writes them)")  # fmt: skip
    parser.add_argument("--games", type=int, default=24, help="success part: games per split (all task types)")
    parser.add_argument("--batch", type=int, default=4, help="success part: games played together")
    parser.add_argument("--max-tokens", type=int, default=256, help="success part: token limit of an episode")
    parser.add_argument("--splits", nargs="+", choices=tuple(SPLITS), default=list(SPLITS))
    parser.add_argument("--modes", nargs="+", choices=tuple(MODES), default=["greedy", "sampled"])
    parser.add_argument("--out", default="benchmarks/results/household.json")
    parser.add_argument("--table", action="store_true", help="print the Markdown tables of --out and exit")
    args = parser.parse_args()
    out = Path(args.out)
    report: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    if args.table:
        print(markdown(report))
        return
    report.setdefault("model", args.model or f"{args.tier} household model")
    if "engine" in args.parts and "engine" not in report:
        report["engine"] = engine_part(args)
    if "files" in args.parts and "files" not in report:
        report["files"] = files_part(args)
        write_report(report, out, plot)
    if "env" in args.parts and "env" not in report:
        report["env"] = env_part(args)
        write_report(report, out, plot)
    if "success" in args.parts:
        success = report.setdefault("success", {})
        for split in args.splits:
            report.setdefault("expert_commands", {})[split] = expert_lengths(split, args.games)
            for mode in args.modes:
                key = f"{split}|{mode}"
                if key not in success:
                    success[key] = success_run(split, mode, args)
                    write_report(report, out, plot)
    write_report(report, out, plot)
    print(markdown(report))


if __name__ == "__main__":
    main()
