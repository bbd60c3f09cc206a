"""Cost of one env step against one cached step of the bare decoder, measured side by side.

For the default decoder at batch 1, on the same prompt and the same context lengths:

- ``decoder``: one cached ``model(input_ids=[[token]], past_key_values=cache)`` call plus
  the greedy argmax (what ``generate`` does per token);
- ``env``: ``env.step(action)`` of ``CoLA-Math500-v0`` (world model, LM head, one cached
  decoder step, text bookkeeping);
- ``env+policy``: the same with ``track_policy=True`` (the policy blocks' cached step too);
- ``env, KV copied per step``: ``env`` with the KV cache copied whole on every step (as a
  concatenating cache does) instead of written in place.

The measurements alternate in rounds so that machine noise hits all of them alike; the
report gives medians, the ratios to ``decoder``, and the process's peak memory.

    python benchmarks/env_step.py --rounds 5 --steps 64
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from _report import pyplot, save_figure, write_report

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.model import decoding, shared_model


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.inference_mode()
def time_bare_decoder(decoder: Any, prompt: torch.Tensor, steps: int) -> float:
    """Seconds per cached decoder step (greedy), after prefilling ``prompt``."""
    out = decoder(input_ids=prompt, use_cache=True)
    cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    started = time.perf_counter()
    for _ in range(steps):
        out = decoder(input_ids=token, past_key_values=cache, use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    return (time.perf_counter() - started) / steps


def time_env(env: gym.Env, problem_index: int, steps: int) -> float:
    """Seconds per ``env.step`` (latent action 0) from the start of an episode."""
    env.reset(options={"problem_index": problem_index})
    started = time.perf_counter()
    done = 0
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(0)
        done += 1
        if terminated or truncated:
            break
    return (time.perf_counter() - started) / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="CoLA checkpoint or decoder (default: the embedded model)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=64, help="tokens per measurement")
    parser.add_argument("--problem-index", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="benchmarks/results/env_step.json")
    args = parser.parse_args()

    rss_start = _rss_mib()
    model = shared_model(args.model)
    rss_model = _rss_mib()
    kwargs: dict[str, Any] = {"model": args.model, "max_episode_steps": args.steps + 1}
    if args.data_dir:
        kwargs["data_dir"] = args.data_dir
    env = gym.make("CoLA-Math500-v0", **kwargs)
    env_policy = gym.make("CoLA-Math500-v0", track_policy=True, **kwargs)
    env.reset(options={"problem_index": args.problem_index})
    prompt_ids = model.tokenizer(env.unwrapped.prompt_text, add_special_tokens=False)["input_ids"]
    prompt = torch.tensor([prompt_ids], device=model.device)
    assert prompt.shape[1] == env.unwrapped.decoding_state.length

    times: dict[str, list[float]] = {"decoder": [], "env": [], "env+policy": [], "env, KV copied per step": []}
    for round_index in range(args.rounds + 1):  # round 0 warms up
        measured = {
            "decoder": time_bare_decoder(model.decoder, prompt, args.steps),
            "env": time_env(env, args.problem_index, args.steps),
            "env+policy": time_env(env_policy, args.problem_index, args.steps),
        }
        decoding.KV_IN_PLACE = False  # the cache concatenated on every step, as before it grew in place
        measured["env, KV copied per step"] = time_env(env, args.problem_index, args.steps)
        decoding.KV_IN_PLACE = True
        if round_index:
            for name, seconds in measured.items():
                times[name].append(seconds)
        print(f"round {round_index}: " + "  ".join(f"{k} {v * 1e3:.1f} ms" for k, v in measured.items()), flush=True)

    medians = {name: statistics.median(values) for name, values in times.items()}
    report = {
        "model": args.model or "embedded:SmolLM2-135M-Instruct (untrained heads)",
        "decoder_params": sum(p.numel() for p in model.decoder.parameters()),
        "head_params": sum(p.numel() for part in model.heads().values() for p in part.parameters()),
        "prompt_tokens": prompt.shape[1],
        "steps": args.steps,
        "rounds": args.rounds,
        "ms_per_step": {name: value * 1e3 for name, value in medians.items()},
        "ratio_to_decoder": {name: value / medians["decoder"] for name, value in medians.items()},
        "memory_mib": {"rss_before_model": rss_start, "rss_after_model": rss_model, "peak_rss": _peak_rss_mib()},
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    write_report(report, args.out, _plot)


def _plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()

    names = list(report["ms_per_step"])
    values = [report["ms_per_step"][n] for n in names]
    fig, ax = plt.subplots(figsize=(5, 3))
    bars = ax.bar(names, values, color=["#888888", "#1f77b4", "#ff7f0e", "#bbbbbb"][: len(names)])
    for bar, name in zip(bars, names, strict=True):
        ax.annotate(
            f"{report['ratio_to_decoder'][name]:.2f}x",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
        )
    ax.set_ylabel("ms per token (batch 1)")
    ax.margins(y=0.15)
    ax.set_title(f"{report['model'].split(' ')[0]}: env step vs cached decoder step", fontsize=9)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
