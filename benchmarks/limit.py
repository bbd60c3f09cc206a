"""This machine's limit for the default decoder, and how close decoding gets to it.

Measured in one run:

- the CPU's fp32 matmul rate (GFLOP/s) at ``2048^3`` and at the decoder's own shapes
  (``[B x d] x [d x intermediate]``, the MLP's, for B = 1, 16, 64), and its memory bandwidth (GB/s, a large copy);
- the decoder's greedy decode (HF ``generate``, timed from the first decoding step to the last)
  at batch 1, 16 and 64.

Each decode setting is printed as a fraction of its bound: a step must read every weight once
(``bytes of weights / bandwidth``) and do ``2 x parameters`` FLOPs per row (``/ the matmul rate
at 2048^3``); the bound is the slower of the two, so batch 1 is bandwidth-bound and large
batches compute-bound. Attention over the KV cache is left out of the bound (short contexts).

    python benchmarks/limit.py --out limit.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from _report import pyplot, save_figure, write_report
from quantization import decode_tokens_per_s

from cola_gym.model import shared_model


def best_seconds(function: Any, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def matmul_gflops(m: int, k: int, n: int, repeats: int) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    return 2 * m * k * n / best_seconds(lambda: a @ b, repeats) / 1e9


def bandwidth_gbs(megabytes: int, repeats: int) -> float:
    source = torch.empty(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    seconds = best_seconds(lambda: target.copy_(source), repeats)
    return 2 * source.numel() * 4 / seconds / 1e9  # read + write


def plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    batches = [int(b) for b in report["decode"]]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(batches, [report["decode"][str(b)]["tokens_per_s"] for b in batches], "o-", label="decode")
    ax.plot(batches, [report["decode"][str(b)]["bound_tokens_per_s"] for b in batches], "k:", label="bound")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch")
    ax.set_ylabel("tokens/s")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="CoLA checkpoint (default: the default model)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="limit.json")
    args = parser.parse_args(argv)
    model = shared_model(args.model)
    decoder = model.decoder
    d = model.hidden_size
    weights = sum(p.numel() for p in decoder.parameters())
    embedding = decoder.get_input_embeddings().weight
    tied = decoder.get_output_embeddings().weight.data_ptr() == embedding.data_ptr()
    # every step reads the body and the LM head; the embedding is a lookup of one row
    step_params = weights - (0 if tied else embedding.numel())
    step_bytes = sum(p.numel() * p.element_size() for p in decoder.parameters()) * step_params / weights
    peak = matmul_gflops(2048, 2048, 2048, args.repeats)
    bandwidth = bandwidth_gbs(512, args.repeats)
    width = getattr(decoder.config, "intermediate_size", 4 * d)
    shapes = {str(b): matmul_gflops(b, d, width, args.repeats * 20) for b in args.batch_sizes}
    prompt = model.tokenizer("Natalia sold clips to 48 of her friends in April.", add_special_tokens=False)["input_ids"]
    decode = {}
    for batch in args.batch_sizes:
        speed = decode_tokens_per_s(model, [prompt] * batch, args.tokens)
        memory_bound = bandwidth * 1e9 / step_bytes * batch
        compute_bound = peak * 1e9 / (2 * step_params)
        bound = min(memory_bound, compute_bound)
        decode[str(batch)] = {"tokens_per_s": speed, "bound_tokens_per_s": bound,
                              "bound": "memory" if memory_bound < compute_bound else "compute",
                              "fraction_of_bound": speed / bound}  # fmt: skip
        print(f"batch {batch}: {speed:.1f} tokens/s, bound {bound:.1f} ({decode[str(batch)]['bound']}), "
              f"{speed / bound:.2f} of it")  # fmt: skip
    report = {"decoder_parameters": weights, "step_parameters": step_params, "step_bytes": step_bytes,
              "matmul_gflops_2048": peak, "matmul_gflops_decoder_shapes": shapes, "bandwidth_gbs": bandwidth,
              "decode": decode, "torch_threads": torch.get_num_threads()}  # fmt: skip
    write_report(report, args.out, plot)


if __name__ == "__main__":
    main()
