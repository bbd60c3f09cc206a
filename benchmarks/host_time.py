"""Host (Python) time per row per step at long turns: booking a token into an episode.

No decoder runs here: a real GSM8K episode of the math task books the tokens of a long
held-out text one by one through :func:`~cola_gym.envs.episode.consume_token` (the turn's text,
the task's completion check) and builds the step's ``info``, as every env row does each step.
Side by side in one run, at turns of 100, 500 and 1,000 tokens:

- ``incremental``: the codec's constant-work path (a byte-level tokenizer's turn grows by one
  token's bytes);
- ``full decode``: the same episode with the whole turn decoded by the tokenizer at every token
  (what the codec does for tokenizers that are not byte-level, and what every step did before).

    python benchmarks/host_time.py --out host_time.json
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import pyplot, save_figure, write_report

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.envs.episode import consume_token, start_episode
from cola_gym.model import shared_model
from cola_gym.registration import task_for
from cola_gym.text.chat import TextCodec


def seconds_per_token(codec: TextCodec, task: Any, tokens: list[int], stepper_info: Any) -> list[float]:
    """Host seconds of each booked token (consume_token + the step's info)."""
    episode = start_episode(task, codec, {"task_index": 0}, np.random.default_rng(0), 1)
    times = []
    for token in tokens:
        started = time.perf_counter()
        episode, _ = consume_token(task, codec, episode, token)
        stepper_info(episode)
        times.append(time.perf_counter() - started)
    return times


def plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    lengths = [int(n) for n in report["ms_per_token"]["incremental"]]
    for name, values in report["ms_per_token"].items():
        ax.plot(lengths, [values[str(n)] for n in lengths], "o-", label=name)
    ax.axhline(0.1, color="black", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("turn length (tokens)")
    ax.set_ylabel("host ms per row per step")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="CoLA checkpoint whose tokenizer books the tokens (default: the default model)")
    parser.add_argument("--data-dir", default=os.environ.get("COLA_DATA_DIR"))
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--out", default="host_time.json")
    args = parser.parse_args(argv)
    model = shared_model(args.model)
    task = task_for("CoLA-GSM8K-v0", data_dir=args.data_dir)
    codec = TextCodec(model.tokenizer, model.stop_token_ids())
    full = TextCodec(model.tokenizer, model.stop_token_ids())
    full.token_bytes = None  # decode the whole turn at every token
    text = " ".join(f"Step {i}: we add {i} and {i + 1} to get {2 * i + 1}, naïvely ≈ {i}½." for i in range(400))
    tokens = model.tokenizer(text, add_special_tokens=False)["input_ids"][: max(args.lengths)]

    def info(episode: Any) -> dict[str, Any]:  # what EpisodeStepper.info builds
        return {"text": episode.transcript + episode.turn_text, **task.info(episode.task_state)}

    report: dict[str, Any] = {"ms_per_token": {}}
    for name, used in (("incremental", codec), ("full decode", full)):
        per_token = seconds_per_token(used, task, tokens, info)
        # the cost at a turn length: the mean over the 20 tokens that end there
        report["ms_per_token"][name] = {str(n): 1e3 * float(np.mean(per_token[n - 20 : n])) for n in args.lengths}
    report["full_over_incremental"] = {
        str(n): report["ms_per_token"]["full decode"][str(n)] / report["ms_per_token"]["incremental"][str(n)]
        for n in args.lengths
    }
    write_report(report, args.out, plot)


if __name__ == "__main__":
    main()
