"""``cola-gym demos``: a task's worked examples (:meth:`~cola_gym.envs.task.Task.demonstrations`)
as JSON lines, one (prompt messages, response) example a row.

Each row holds ``messages`` (the prompt as chat messages, as the env poses it) and
``response`` (the demonstrated assistant turn); with ``--tokenizer``, also ``prompt`` and
``completion``: the same exchange as that tokenizer's chat template writes it
(:func:`~cola_gym.text.chat.render_exchange`, as training and the env render it).

``--search mcts`` (or ``best-of-n``) writes expert iteration's data instead: the answers a
search got right on the first ``--limit`` problems (:mod:`cola_agents.expert_iteration`).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from cola_agents.cli.options import add_data_dir_option, add_env_option


def add_parser(commands: Any) -> None:
    """Adds ``demos`` to the subcommands."""
    demos = commands.add_parser("demos", help="write a task's demonstrations (prompt messages, response) as JSON lines")
    add_env_option(demos, help_text="the cola-gym id whose task's demonstrations to write")
    demos.add_argument("--limit", type=int, default=100, help="how many demonstrations, from the first on")
    demos.add_argument("--out", help="JSON-lines file to write (default: standard output)")
    demos.add_argument("--tokenizer", help="a tokenizer (decoder directory or Hub id): adds its rendered prompt and "
                       "completion to every row")  # fmt: skip
    demos.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="a task argument, repeatable (household ids: demo_expert=searching for the "
                       "searching expert's games)")  # fmt: skip
    demos.add_argument("--dagger", action="store_true",
                       help="household ids: play the model's CoLA prior (greedy) on the first --limit games and "
                       "write the searching expert's next command for every state it reached (DAgger)")  # fmt: skip
    demos.add_argument("--search", choices=("mcts", "best-of-n"),
                       help="expert iteration: search each of the first --limit problems (a -Train- id) and write "
                       "the answers search got right (single-turn ids)")  # fmt: skip
    demos.add_argument("--budget", type=int, default=256, help="with --search: decoder tokens per problem")
    demos.add_argument("--samples", type=int, default=16, help="with --search best-of-n: samples per problem")
    demos.add_argument("--leaf-value", choices=("oracle", "q_network"), default="oracle",
                       help="with --search: score leaves with the reward (known on training problems) or the "
                       "model's Q-network")  # fmt: skip
    demos.add_argument("--model", help="with --dagger or --search: the model that plays (default: the id's own)")
    add_data_dir_option(demos)
    demos.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Writes the rows; says how many and where when they go to a file."""
    from cola_gym.registration import task_for

    if args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    task_args = dict(_task_arg(text) for text in args.task_arg)
    task = task_for(args.env, data_dir=args.data_dir, **task_args)
    tokenizer = None
    if args.tokenizer is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    examples: Iterable[tuple[Sequence[Any], str]]
    try:
        if args.search:
            examples = _search_examples(args, task_args)
        elif args.dagger:
            from cola_agents.dagger import dagger_chats

            model = {} if args.model is None else {"model": args.model}
            examples = dagger_chats(args.env, range(args.limit), show_progress=True, **task_args, **model)
        else:
            examples = itertools.islice(task.demonstrations(), args.limit)
        with _output(args.out) as handle:
            written = write_rows(handle, demonstration_rows(examples, tokenizer))
    except NotImplementedError as err:
        raise ValueError(f"{args.env}: {err}") from err
    if args.out is not None:
        print(f"wrote {written} demonstrations of {args.env} to {args.out}")
    if args.search:
        print(json.dumps(args.search_stats))
    return 0


def _search_examples(args: argparse.Namespace, task_args: dict[str, Any]) -> Iterable[tuple[Sequence[Any], str]]:
    """Expert iteration's data: the answers ``args.search`` got right (see :mod:`cola_agents.expert_iteration`)."""
    from cola_agents.expert_iteration import search_chats
    from cola_agents.mcts import MCTSAgent, MCTSConfig
    from cola_agents.mcts.agent import BestOfNAgent
    from cola_gym.model import CoLAModel
    from cola_gym.registration import entry

    if args.budget < 1:
        raise ValueError(f"--budget must be >= 1, got {args.budget}")
    registered = entry(args.env)
    model = CoLAModel.from_pretrained(args.model or registered.model)
    config = MCTSConfig(num_simulations=4096, token_budget=args.budget, leaf_value=args.leaf_value,
                        rollout_max_tokens=registered.max_episode_steps or 1024)  # fmt: skip
    agent = (MCTSAgent(model, config) if args.search == "mcts"
             else BestOfNAgent(model, num_samples=args.samples, config=config))  # fmt: skip
    args.search_stats = {}
    data = {} if args.data_dir is None else {"data_dir": args.data_dir}
    return search_chats(agent, args.env, range(args.limit), show_progress=True, stats=args.search_stats,
                        model=model, **data, **task_args)  # fmt: skip


def _task_arg(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> ``(key, value)``, the value read as JSON when it is JSON (``3``, ``true``), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--task-arg must be KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def demonstration_rows(
    examples: Iterable[tuple[Sequence[Any], str]], tokenizer: Any = None
) -> Iterator[dict[str, Any]]:
    """One JSON-able row per (prompt messages, response); ``prompt`` and ``completion`` too with a tokenizer."""
    from cola_gym.text.chat import render_exchange

    for messages, response in examples:
        row: dict[str, Any] = {"messages": [dict(message) for message in messages], "response": response}
        if tokenizer is not None:
            row["prompt"], row["completion"] = render_exchange(tokenizer, messages, response)
        yield row


def write_rows(handle: TextIO, rows: Iterable[dict[str, Any]]) -> int:
    """Writes each row as one JSON line; returns how many."""
    count = 0
    for row in rows:
        handle.write(json.dumps(row) + "\n")
        count += 1
    return count


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """The file to write (its folder made), or standard output."""
    if path is None:
        yield sys.stdout
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with Path(path).open("w", encoding="utf-8") as handle:
        yield handle
