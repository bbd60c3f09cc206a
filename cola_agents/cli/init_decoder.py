"""``cola-gym init-decoder``: a small Llama decoder from scratch, the micro tier's starting point.

The tokenizer is trained on a task's demonstrations, rendered as the finished tokenizer's chat
template will render them (:func:`~cola_gym.text.chat.render_exchange`), without the ChatML
special tokens (they are whole tokens already); the weights are random.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from cola_agents.config_args import add_config_arguments, config_values


def add_parser(commands: Any) -> None:
    """Adds ``init-decoder`` to the subcommands."""
    from cola_gym.training.micro import MicroShape

    micro = commands.add_parser("init-decoder", help="write a small random Llama decoder with a tokenizer for a task")
    micro.add_argument("--data", action="append", required=True,
                       help="task whose prompts and demonstrations train the tokenizer (id or short name)")  # fmt: skip
    micro.add_argument("--examples", type=int, default=20_000, help="demonstrations per --data source")
    micro.add_argument("--vocab-size", type=int, default=1024, help="byte-level BPE vocabulary (>= 259)")
    micro.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    micro.add_argument("--out", required=True, help="directory for the decoder and its tokenizer")
    shape = micro.add_argument_group("the decoder's shape (MicroShape)")
    add_config_arguments(shape, MicroShape, aliases={"--num-layers": ("--layers",), "--num-heads": ("--heads",)})
    micro.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Trains the tokenizer, writes the decoder and says how to train it."""
    from tqdm import tqdm

    from cola_gym.training.micro import MicroShape, init_decoder, parameter_count, train_tokenizer

    shape = MicroShape(**config_values(args, MicroShape))
    if args.examples < 1:
        raise ValueError(f"--examples must be >= 1, got {args.examples}")
    texts = tokenizer_texts(args.data, args.examples)
    tokenizer = train_tokenizer(tqdm(texts, desc="tokenizer text", unit="example"), vocab_size=args.vocab_size)
    path = init_decoder(args.out, tokenizer, shape, seed=args.seed)
    print(f"wrote a random {parameter_count(path):,}-parameter Llama decoder with a {len(tokenizer)}-token "
          f"vocabulary to {path}; train it with: cola-gym train --stage lm --model {path} ...")  # fmt: skip
    return 0


def tokenizer_texts(specs: Sequence[str], examples: int) -> Iterator[str]:
    """The first ``examples`` demonstrations of each task source as chat text without special tokens."""
    from cola_gym.text.chat import render_exchange
    from cola_gym.training.data import task_chats
    from cola_gym.training.micro import SPECIAL_TOKENS, train_tokenizer

    template = train_tokenizer((), vocab_size=256 + len(SPECIAL_TOKENS))  # only its chat template is used
    for spec in specs:
        for messages, response in itertools.islice(task_chats(spec, None), examples):
            text = "".join(render_exchange(template, messages, response))
            for special in SPECIAL_TOKENS:
                text = text.replace(special, "")
            yield text
