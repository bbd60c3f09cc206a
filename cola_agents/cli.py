"""The ``cola-gym`` command.

- ``cola-gym episode``: run one episode and print the text, the answer and the reward;
- ``cola-gym train``: train one CoLA stage (1a, 1b, 2, or q: the Q-network); ``torchrun`` makes
  it data-parallel;
- ``cola-gym collect-episodes``: log best-of-N policy episodes (actions, rewards) for Q-learning;
- ``cola-gym export``: copy a trained model, its heads at lower precision, with its card;
- ``cola-gym household-demos``: write the household expert's games as chat transcripts;
- ``cola-gym benchmark run`` / ``report``: the RL benchmark protocol (suites of algorithm x
  task x seed runs at equal env-token budgets, resumable, local or Ray) and its rliable report;
- ``cola-gym init-decoder``: a small Llama decoder from scratch (tokenizer trained on a task's
  text, random weights), the micro tier's starting point for ``cola-gym train --stage lm``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
from tqdm import tqdm

import cola_gym
from cola_agents.agents import BoundAgent, PriorAgent, RandomAgent
from cola_agents.config_args import add_config_arguments
from cola_gym.errors import CoLAError


def _make_agent(args: argparse.Namespace, env: gym.Env) -> BoundAgent:
    """The chosen agent, bound to ``env``."""
    agent: BoundAgent
    if args.agent == "random":
        agent = RandomAgent(seed=args.seed)
    elif args.agent in ("policy", "greedy"):
        agent = PriorAgent(seed=args.seed)
    else:
        from cola_agents.mcts import BestOfNAgent, MCTSAgent, MCTSConfig

        model = env.unwrapped.model  # type: ignore[attr-defined]
        leaf_value: Any = args.leaf_value or ("q_network" if model.q_network is not None else "oracle")
        config = MCTSConfig(num_simulations=args.simulations, rollout_max_tokens=args.rollout_tokens,
                            leaf_value=leaf_value, parallel_expansions=args.parallel_expansions,
                            seed=args.seed)  # fmt: skip
        agent = MCTSAgent(model, config) if args.agent == "mcts" else BestOfNAgent(model, args.samples, config)
        source = "the env reward (oracle)" if leaf_value == "oracle" else "the Q-network"
        print(f"{args.agent}: leaf values from {source}")
    agent.bind(env)
    return agent


def _episode(args: argparse.Namespace) -> int:
    kwargs: dict[str, Any] = {
        "track_policy": args.agent != "random",
        "device": args.device,
        "quantization": args.quantization,
    }
    if args.model is not None:
        kwargs["model"] = args.model
    if args.data_dir is not None:
        kwargs["data_dir"] = args.data_dir
    if args.max_steps is not None:
        kwargs["max_episode_steps"] = args.max_steps
    started = time.perf_counter()
    if args.agent in ("mcts", "best-of-n"):
        from cola_gym.model import shared_model

        model = args.model if args.model is not None else gym.spec(args.env).kwargs.get("model")
        kwargs["track_q"] = shared_model(model).q_network is not None
    env = gym.make(args.env, **kwargs)
    loaded = time.perf_counter()
    options = {} if args.task_index is None else {"task_index": args.task_index}
    obs, info = env.reset(seed=args.seed, options=options)
    agent = _make_agent(args, env)
    deterministic = args.agent != "policy"
    base = env.unwrapped
    total = env.spec.max_episode_steps if env.spec is not None else None
    reward, terminated, truncated = 0.0, False, False
    with tqdm(total=total, desc="decoding", unit="tok") as progress:
        while not (terminated or truncated):
            action, _ = agent.predict(obs, deterministic=deterministic)
            obs, step_reward, terminated, truncated, info = env.step(action)
            reward = float(step_reward)
            progress.update(1)
    episode = base.episode  # type: ignore[attr-defined]
    print(f"\n=== {args.env} task {info['task_index']} ===")
    print(base.task.describe(episode.task_state))  # type: ignore[attr-defined]
    print("\n=== model output ===")
    print(info["text"])
    print("\n=== result ===")
    for key in base.task.info_keys:  # type: ignore[attr-defined]
        print(f"{key}: {info[key]}")
    print(f"success: {info['is_success']}")
    ended = "terminated" if terminated else "truncated (step limit)"
    print(
        f"reward: {reward:g}  ({ended} after {info['num_tokens']} tokens; "
        f"load {loaded - started:.1f} s, decode {time.perf_counter() - loaded:.1f} s)"
    )
    env.close()
    return 0


def _sources(specs: Sequence[str], args: argparse.Namespace, limit: int | None) -> list[Any]:
    from cola_gym.training import TextSource

    fields = {"text_field": args.text_field, "prompt_field": args.prompt_field, "response_field": args.response_field}
    return [TextSource(spec, max_examples=limit, **(fields if spec.endswith(".jsonl") else {})) for spec in specs]


def _train(args: argparse.Namespace) -> int:
    from cola_gym.model import CoLAConfig, DecoderSettings
    from cola_gym.training import TrainConfig
    from cola_gym.training.pipeline import train_stage
    from cola_gym.training.stages import STAGE_OBJECTIVES

    names = [f.name for f in dataclasses.fields(TrainConfig)]
    config = TrainConfig(**{name: getattr(args, name) for name in names if hasattr(args, name)})

    on_episodes = STAGE_OBJECTIVES[config.stage].data == "episodes"
    if on_episodes != (args.episodes is not None) or (not on_episodes and not args.data):
        raise ValueError("stage q needs --episodes (and no --data); the other stages need --data")
    settings = None
    if args.device != "auto" or args.quantization != "auto":
        settings = DecoderSettings(device=args.device, quantization=args.quantization)
    metrics = train_stage(
        config,
        _sources(args.data, args, args.max_examples),
        args.out,
        model=args.model,
        cola_config=CoLAConfig(num_actions=args.num_actions, scale=args.scale, init_seed=config.seed),
        eval_sources=_sources(args.eval_data, args, args.eval_examples),
        data_dir=args.data_dir,
        settings=settings,
        cache_root=args.cache_dir,
        command="cola-gym " + shlex.join(args.argv),
        episodes=args.episodes,
        q_network_num_layers=args.q_layers,
    )
    if metrics:
        print(json.dumps(metrics, indent=2))
    print(f"trained model: {args.out}/final")
    return 0


def _collect(args: argparse.Namespace) -> int:
    from cola_agents.collect import collect_episodes
    from cola_agents.mcts import MCTSConfig

    env_kwargs: dict[str, Any] = {} if args.model is None else {"model": args.model}
    if args.data_dir:
        env_kwargs["data_dir"] = args.data_dir
    problems = range(args.first_problem, args.first_problem + args.problems)
    config = MCTSConfig(leaf_value="oracle", rollout_max_tokens=args.max_tokens, seed=args.seed)
    summary = collect_episodes(args.env, problems, args.out, samples=args.samples,
                               batch_problems=args.batch_problems, config=config, **env_kwargs)  # fmt: skip
    print(json.dumps(summary, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    import shutil

    import torch

    from cola_gym.model import CoLAModel, DecoderSettings

    model = CoLAModel.from_pretrained(args.model, settings=DecoderSettings(device="cpu"))
    model.save_pretrained(args.out, store_decoder=args.store_decoder, dtype=getattr(torch, args.dtype))
    for card in ("README.md", "training.json"):
        if (Path(args.model) / card).is_file():
            shutil.copy(Path(args.model) / card, Path(args.out) / card)
    stored = "heads and decoder" if args.store_decoder else "heads"
    print(f"exported {args.model} -> {args.out} ({stored} in {args.dtype})")
    return 0


def _household_demos(args: argparse.Namespace) -> int:
    from cola_gym.tasks.household import generate_game
    from cola_gym.tasks.household.task import HouseholdTask, expert_transcript

    task = HouseholdTask(split=args.split, task_type=args.task_type)
    last = args.first_game + args.games
    if args.games < 1 or not 0 <= args.first_game < last <= task.num_tasks:
        raise ValueError(f"--first-game and --games must select games within [0, {task.num_tasks}) of {args.split}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    commands = 0
    with out.open("w", encoding="utf-8") as handle:
        for index in tqdm(range(args.first_game, last), desc="expert games", unit="game"):
            game = generate_game(args.split, index, task.task_type)
            messages = expert_transcript(game)
            commands += sum(m["role"] == "assistant" for m in messages)
            row = {
                "game": game.name,
                "task_type": game.goal.task_type,
                "goal": game.goal.sentence,
                "messages": messages,
            }
            handle.write(json.dumps(row) + "\n")
    print(f"wrote {args.games} expert games ({commands} commands, {commands / args.games:.1f} per game) to {out}")
    return 0


def _init_decoder(args: argparse.Namespace) -> int:
    import itertools

    from cola_gym.training.data import task_chats
    from cola_gym.training.micro import MicroShape, init_decoder, parameter_count, train_tokenizer

    shape = MicroShape(hidden_size=args.hidden_size, num_layers=args.layers, num_heads=args.heads,
                       intermediate_size=args.intermediate_size, max_positions=args.max_positions)  # fmt: skip
    if args.examples < 1:
        raise ValueError(f"--examples must be >= 1, got {args.examples}")

    def texts() -> Any:
        for spec in args.data:
            for messages, response in itertools.islice(task_chats(spec, None), args.examples):
                turns = "".join(f"{m['role']}\n{m['content']}\n" for m in messages)
                yield f"{turns}assistant\n{response}\n"

    tokenizer = train_tokenizer(tqdm(texts(), desc="tokenizer text", unit="example"), vocab_size=args.vocab_size)
    path = init_decoder(args.out, tokenizer, shape, seed=args.seed)
    print(f"wrote a random {parameter_count(path):,}-parameter Llama decoder with a {len(tokenizer)}-token "
          f"vocabulary to {path}; train it with: cola-gym train --stage lm --model {path} ...")  # fmt: skip
    return 0


def _benchmark_run(args: argparse.Namespace) -> int:
    from cola_agents.benchmark import load_suite, run_suite, write_report
    from cola_agents.benchmark.suite import Suite, TaskSpec, parse_algorithms, training_id

    overrides = {"budget": args.budget, "eval_points": args.eval_points, "eval_problems": args.eval_problems,
                 "n_envs": args.n_envs, "seeds": args.seeds}  # fmt: skip
    given = (("model", args.model), ("data_dir", args.data_dir), ("max_episode_steps", args.max_steps))
    env_kwargs = {k: v for k, v in given if v is not None}
    if args.suite:
        if args.env or args.algo:
            raise ValueError("give either --suite or --env/--algo, not both")
        suite = load_suite(args.suite, **overrides)
        if env_kwargs:
            suite = dataclasses.replace(suite, env_kwargs={**suite.env_kwargs, **env_kwargs})
    else:
        if not args.env or not args.algo:
            raise ValueError("give --suite FILE, or at least one --env and one --algo")
        fields: dict[str, Any] = {k: (tuple(v) if k == "seeds" else v) for k, v in overrides.items() if v is not None}
        tasks = tuple(TaskSpec(train=training_id(e), eval=e) for e in args.env)
        suite = Suite(tasks, parse_algorithms(args.algo), env_kwargs=env_kwargs, **fields)
    runs = suite.runs()
    print(f"{len(runs)} runs ({len(suite.algorithms)} algorithms x {len(suite.tasks)} tasks x {len(suite.seeds)} "
          f"seeds), {suite.budget:,} env tokens each, evaluated at {list(suite.eval_budgets)} on "
          f"{suite.eval_problems} held-out problems; results in {args.out}")  # fmt: skip
    run_suite(suite, args.out, launcher=args.launcher, workers=args.workers, ray_address=args.ray_address)
    paths = write_report(args.out, reps=args.reps)
    print(Path(paths["markdown"]).read_text(encoding="utf-8"))
    print("report: " + ", ".join(str(p) for p in paths.values()))
    return 0


def _benchmark_report(args: argparse.Namespace) -> int:
    from cola_agents.benchmark import write_report

    paths = write_report(args.runs, args.out, reps=args.reps, title=args.title, skip_bad=args.skip_bad)
    print(Path(paths["markdown"]).read_text(encoding="utf-8"))
    print("report: " + ", ".join(str(p) for p in paths.values()))
    return 0


_TRAIN_ALIASES = {
    "--learning-rate": ("--lr",),
    "--min-learning-rate": ("--min-lr",),
    "--no-use-hidden-cache": ("--no-hidden-cache",),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``cola-gym`` argument parser."""
    parser = argparse.ArgumentParser(prog="cola-gym", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    episode = commands.add_parser("episode", help="run one episode and print text, answer and reward")
    episode.add_argument("--env", default="CoLA-Math500-v0", choices=sorted(cola_gym.ENV_IDS))
    episode.add_argument("--model", help="CoLA checkpoint or decoder (path or Hub id); default: the embedded model")
    episode.add_argument(
        "--agent",
        choices=("policy", "greedy", "random", "mcts", "best-of-n"),
        default="policy",
        help="policy: sample the CoLA policy prior (top-k 40); greedy: its argmax; random: uniform; "
        "mcts: MCTS-Q tree search; best-of-n: the best of --samples policy samples",
    )
    episode.add_argument("--simulations", type=int, default=64, help="mcts: simulations (the paper: 64)")
    episode.add_argument(
        "--parallel-expansions",
        type=int,
        default=1,
        help="mcts: nodes expanded per wave and rolled out in one batch (1: the paper's sequential search; "
        "more: faster on small batches, a slightly different search)",
    )
    episode.add_argument("--samples", type=int, default=16, help="best-of-n: samples")
    episode.add_argument("--rollout-tokens", type=int, default=1024, help="mcts/best-of-n: token limit of a rollout")
    episode.add_argument(
        "--leaf-value",
        choices=("q_network", "oracle"),
        help="mcts/best-of-n: score rollouts with the Q-network (default when the model has one) "
        "or the env's reward (oracle)",
    )
    episode.add_argument(
        "--task-index", "--problem-index", type=int, help="task instance (problem) to run (default: drawn with --seed)"
    )
    episode.add_argument("--seed", type=int, default=0)
    episode.add_argument("--max-steps", type=int, help="token limit (default: the env's)")
    episode.add_argument("--data-dir", help="folder with the data sets (default: $COLA_DATA_DIR, else the Hub)")
    episode.add_argument("--device", default="auto")
    episode.add_argument("--quantization", default="auto", choices=("auto", "none", "4bit", "8bit"))
    episode.set_defaults(run=_episode)

    train = commands.add_parser(
        "train",
        help="train one CoLA stage (1a, 1b, 2, or q: the Q-network)",
        description="Train one CoLA stage. Re-running the same command resumes it.",
    )
    train.add_argument(
        "--model",
        help="start from: a CoLA checkpoint (previous stage's final/), a decoder "
        "(path or Hub id; fresh heads), default: the embedded decoder",
    )
    train.add_argument(
        "--data",
        action="append",
        default=[],
        help="training source, repeatable: an env id or its short name (math:train, gsm8k:train), file.jsonl, file.txt",
    )
    train.add_argument("--episodes", help="stage q: logged episodes (cola-gym collect-episodes)")
    train.add_argument("--q-layers", type=int, default=2, help="stage q: blocks of a new Q-network")
    train.add_argument("--eval-data", action="append", default=[], help="held-out source, repeatable (e.g. math:test)")
    train.add_argument("--max-examples", type=int, help="use the first N examples of each training source")
    train.add_argument("--eval-examples", type=int, default=64, help="first N examples of each held-out source")
    train.add_argument("--text-field", help="JSON-lines field with a whole document")
    train.add_argument("--prompt-field", help="JSON-lines field with the user turn")
    train.add_argument("--response-field", help="JSON-lines field with the assistant turn")
    train.add_argument("--data-dir", help="folder with the math data sets (default: $COLA_DATA_DIR)")
    train.add_argument("--out", required=True, help="run directory (checkpoints, TensorBoard, final/)")
    train.add_argument("--cache-dir", help="hidden-state cache folder (default: beside --out)")
    train.add_argument("--num-actions", type=int, default=64, help="K, for fresh heads")
    train.add_argument("--scale", choices=("compact", "paper"), default="compact", help="head shapes for fresh heads")
    train.add_argument("--device", default="auto")
    train.add_argument("--quantization", default="auto", choices=("auto", "none", "4bit", "8bit"))
    from cola_gym.training.config import TrainConfig

    add_config_arguments(train, TrainConfig, aliases=_TRAIN_ALIASES)
    train.set_defaults(run=_train)

    collect = commands.add_parser("collect-episodes", help="log best-of-N policy episodes for Q-learning")
    collect.add_argument("--env", default="CoLA-GSM8K-Train-v0", choices=sorted(cola_gym.ENV_IDS))
    collect.add_argument("--model", help="CoLA checkpoint (default: the default model)")
    collect.add_argument("--problems", type=int, default=64, help="how many problems, from --first-problem on")
    collect.add_argument("--first-problem", type=int, default=0)
    collect.add_argument("--samples", type=int, default=4, help="episodes per problem")
    collect.add_argument("--batch-problems", type=int, default=8, help="problems decoded together")
    collect.add_argument("--max-tokens", type=int, default=512, help="token limit of an episode")
    collect.add_argument("--seed", type=int, default=0)
    collect.add_argument("--data-dir", help="folder with the math data sets (default: $COLA_DATA_DIR)")
    collect.add_argument("--out", required=True, help="JSON-lines file (appended to)")
    collect.set_defaults(run=_collect)

    export = commands.add_parser("export", help="copy a trained model with its heads at lower precision")
    export.add_argument("--model", required=True, help="a CoLA checkpoint directory")
    export.add_argument("--out", required=True)
    export.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    export.add_argument("--store-decoder", action="store_true",
                        help="also write the decoder (a self-contained export, e.g. a micro decoder)")  # fmt: skip
    export.set_defaults(run=_export)

    demos = commands.add_parser("household-demos", help="write the household expert's games as chat transcripts")
    demos.add_argument("--split", default="train", choices=("train", "valid_seen", "valid_unseen"))
    demos.add_argument("--task-type", help="one of ALFWorld's six task types or its short name (default: all six)")
    demos.add_argument("--games", type=int, default=100, help="how many games, from --first-game on")
    demos.add_argument("--first-game", type=int, default=0)
    demos.add_argument("--out", required=True, help="JSON-lines file: one game per line, its chat in 'messages'")
    demos.set_defaults(run=_household_demos)

    benchmark = commands.add_parser("benchmark", help="the RL benchmark protocol: run a suite, report it")
    benchmark_commands = benchmark.add_subparsers(dest="benchmark_command", required=True)
    bench_run = benchmark_commands.add_parser(
        "run",
        help="train and evaluate every (algorithm, task, seed) of a suite; re-running resumes",
        description="Train and evaluate every (algorithm, task, seed) run of a suite at equal env-token "
        "budgets on fixed held-out problems; re-running the command resumes it. Ends with the report.",
    )
    bench_run.add_argument("--suite", help="suite TOML file (benchmarks/suites/*.toml); or give --env and --algo")
    bench_run.add_argument("--env", action="append", default=[],
                           help="evaluation id, repeatable (trains on its -Train- id when there is one)")  # fmt: skip
    bench_run.add_argument("--algo", action="append", default=[],
                           help="ppo, a2c, maskable_ppo or grpo; a -token suffix runs on the token twins")  # fmt: skip
    bench_run.add_argument("--budget", type=int, help="env tokens per run (default 20000)")
    bench_run.add_argument("--eval-points", type=int, help="evaluations after each 1/N of the budget (default 5)")
    bench_run.add_argument("--eval-problems", type=int, help="held-out problems per evaluation (default 64)")
    bench_run.add_argument("--n-envs", type=int, help="episodes decoded together in training (default 16)")
    bench_run.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2)")
    bench_run.add_argument("--model", help="model for every env (default: each id's own)")
    bench_run.add_argument("--max-steps", type=int, help="token limit of every episode (default: each id's)")
    bench_run.add_argument("--data-dir", help="folder with the math data sets (default: $COLA_DATA_DIR)")
    bench_run.add_argument("--launcher", choices=("local", "ray"), default="local",
                           help="local processes, or tasks on a Ray cluster (RAY_ADDRESS / --ray-address)")  # fmt: skip
    bench_run.add_argument("--workers", type=int, default=1, help="local: runs at once")
    bench_run.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    bench_run.add_argument("--out", required=True, help="output folder (runs/, checkpoints/, tensorboard/, report)")
    bench_run.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the report")
    bench_run.set_defaults(run=_benchmark_run)
    bench_report = benchmark_commands.add_parser("report", help="aggregate a suite's runs with rliable")
    bench_report.add_argument("--runs", required=True, help="the folder of cola-gym benchmark run --out")
    bench_report.add_argument("--out", help="where to write the report (default: --runs)")
    bench_report.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    bench_report.add_argument("--title", default="", help="title of the learning-curve plot")
    bench_report.add_argument(
        "--skip-bad", action="store_true", help="leave out bad run files (with a warning) instead of refusing"
    )
    bench_report.set_defaults(run=_benchmark_report)

    micro = commands.add_parser("init-decoder", help="write a small random Llama decoder with a tokenizer for a task")
    micro.add_argument("--data", action="append", required=True,
                       help="task whose prompts and demonstrations train the tokenizer (id or short name)")  # fmt: skip
    micro.add_argument("--examples", type=int, default=20_000, help="demonstrations per --data source")
    micro.add_argument("--vocab-size", type=int, default=1024, help="byte-level BPE vocabulary (>= 259)")
    micro.add_argument("--hidden-size", type=int, default=256)
    micro.add_argument("--layers", type=int, default=4)
    micro.add_argument("--heads", type=int, default=4)
    micro.add_argument("--intermediate-size", type=int, default=768)
    micro.add_argument("--max-positions", type=int, default=512)
    micro.add_argument("--seed", type=int, default=0)
    micro.add_argument("--out", required=True, help="directory for the decoder and its tokenizer")
    micro.set_defaults(run=_init_decoder)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cola-gym`` command."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "transformers", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return int(args.run(args))
    except (
        CoLAError,
        ValueError,
        FileNotFoundError,
    ) as error:  # bad input: the message says what to fix; a traceback would bury it
        print(f"cola-gym {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
