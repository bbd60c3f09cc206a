"""Stage 1a training throughput: cached decoder states vs running the decoder every step.

Same model, same batches, same optimizer steps, measured in alternating rounds. Also
reports what building the cache costs once, and after how many epochs it has paid off.

    python benchmarks/stage1a_throughput.py --examples 32 --steps 4 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _report import pyplot, save_figure, write_report

from cola_gym.model import CoLAModel
from cola_gym.training import TextSource, TrainConfig, load_examples
from cola_gym.training.hidden_cache import HiddenStateCache
from cola_gym.training.objectives import collate
from cola_gym.training.stages import StageObjective, stage_objective


def run_steps(model: Any, objective: StageObjective, optimizer: Any, rows: list[list[tuple]]) -> tuple[float, int]:
    """Seconds and targets for one optimizer step per batch of ``rows``."""
    tokens = 0
    started = time.perf_counter()
    for step, batch_rows in enumerate(rows):
        batch = collate(batch_rows, only_responses=False).to(model.device)
        loss, _ = objective(batch, torch.Generator().manual_seed(step))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch.num_targets
    return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoder", default=None, help="decoder (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--data", default="math:train")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=384)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/stage1a_throughput.json")
    args = parser.parse_args()

    model = CoLAModel.from_decoder(args.decoder)
    examples = load_examples(
        [TextSource(args.data, max_examples=args.examples)], model.tokenizer, args.seq_len, args.data_dir
    )
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        cache = HiddenStateCache.build(model, examples, root, batch_size=args.batch_size, show_progress=False)
        build_s = time.perf_counter() - started
        config = TrainConfig(stage="1a", batch_size=args.batch_size, seq_len=args.seq_len)
        model.requires_grad_(False)
        for part in (model.idm, model.codebook, model.world_model):
            part.requires_grad_(True)
        objective = stage_objective(model, config)
        optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-4)
        order = [i % len(examples) for i in range(args.steps * args.batch_size)]
        batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
        cached_rows = [[(*cache.example(i)[:2], examples[i].response_spans) for i in batch] for batch in batches]
        plain_rows = [[(examples[i].ids, None, examples[i].response_spans) for i in batch] for batch in batches]
        speeds: dict[str, list[float]] = {"cached": [], "recompute": []}
        for round_index in range(args.rounds + 1):  # round 0 warms up
            for name, rows in (("cached", cached_rows), ("recompute", plain_rows)):
                seconds, tokens = run_steps(model, objective, optimizer, rows)
                if round_index:
                    speeds[name].append(tokens / seconds)
            print(
                f"round {round_index}: " + "  ".join(f"{k} {v[-1]:.0f} tok/s" for k, v in speeds.items() if v),
                flush=True,
            )
    cached, recompute = (statistics.median(speeds[k]) for k in ("cached", "recompute"))
    cache_tokens = int(cache.meta["num_tokens"])
    epoch_saving_s = cache_tokens / recompute - cache_tokens / cached
    report = {
        "decoder": args.decoder or "embedded:SmolLM2-135M-Instruct",
        "batch_size": args.batch_size, "seq_len": args.seq_len, "steps_per_measurement": args.steps,
        "tokens_per_s": {"cached": cached, "recompute": recompute},
        "speedup": cached / recompute,
        "cache_build": {"seconds": build_s, "tokens": cache_tokens, "tokens_per_s": cache_tokens / build_s,
                        "bytes_per_token": 2 * model.hidden_size},
        "cache_pays_off_after_epochs": build_s / epoch_saving_s if epoch_saving_s > 0 else None,
    }  # fmt: skip
    write_report(report, args.out, _plot)


def _plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4.5, 3))
    names = ["recompute", "cached"]
    values = [report["tokens_per_s"][n] for n in names]
    ax.bar(["decoder every step", "cached states"], values, color=["#888888", "#1f77b4"])
    ax.set_ylabel("stage 1a tokens / s")
    ax.set_title(f"stage 1a: {report['speedup']:.2f}x with the hidden-state cache", fontsize=9)
    ax.margins(y=0.15)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
