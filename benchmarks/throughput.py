"""Tokens per second: bare ``generate`` vs our single env vs our vector env vs SB3 PPO rollouts.

For the default decoder, in one run, at batch sizes 1, 8, 16 and 32 (N envs = batch):

- ``generate``: Hugging Face ``generate`` of the bare decoder (greedy, KV cache), the
  same MATH-500 prompts, ``--tokens`` new tokens per row (prefill excluded, as for the
  envs, whose ``reset`` prefills);
- ``single_env``: one ``CoLA-Math500-v0`` env stepped ``--tokens`` times (batch 1 only);
- ``vector_env``: ``gym.make_vec(..., num_envs=N)`` stepped ``--tokens`` times;
- ``ppo_rollout``: SB3 PPO collecting ``--tokens`` steps on the batched SB3 VecEnv
  (policy forward, buffer writes, VecMonitor), without the gradient update.

Measurements alternate in rounds; medians are reported with the ratios the targets name:
vector env / generate (>= 0.9), PPO rollout / vector env (>= 0.8), vector env N=16 / N=1 (>= 5).

    python benchmarks/throughput.py --tokens 32 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from _report import pyplot, save_figure, write_report
from transformers import LogitsProcessorList

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.model import shared_model
from cola_gym.model.generation import left_pad

ENV_ID = "CoLA-Math500-v0"


def prompts_of(model: Any, count: int, env_kwargs: dict[str, Any]) -> list[list[int]]:
    """The env's own prompts for problems 0 .. count-1."""
    env = gym.make(ENV_ID, **env_kwargs)
    prompts = []
    for index in range(count):
        env.reset(options={"problem_index": index})
        prompts.append(model.tokenizer(env.unwrapped.prompt_text, add_special_tokens=False)["input_ids"])
    return prompts


@torch.inference_mode()
def time_generate(model: Any, prompts: list[list[int]], tokens: int) -> float:
    """Decoding tokens/s of ``generate``, the prompt's prefill excluded (as for the envs, whose
    ``reset`` does the prefill): from the first decoding step's logits to the last one's, read
    by a logits processor that only notes the time (``tokens + 1`` new tokens, ``tokens`` steps
    after the prefill). Subtracting a 1-token run instead lets the prefill's noise swamp batch 16."""
    ids, mask = left_pad(prompts, pad_id=model.tokenizer.pad_token_id or 0)
    ids, mask = ids.to(model.device), mask.to(model.device)
    stamps: list[float] = []

    def note_time(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        stamps.append(time.perf_counter())
        return scores

    model.decoder.generate(input_ids=ids, attention_mask=mask, max_new_tokens=tokens + 1, min_new_tokens=tokens + 1,
                           do_sample=False, pad_token_id=model.tokenizer.pad_token_id,
                           logits_processor=LogitsProcessorList([note_time]))  # fmt: skip
    return len(prompts) * tokens / (stamps[-1] - stamps[0])


def time_single_env(env_kwargs: dict[str, Any], tokens: int) -> float:
    env = gym.make(ENV_ID, max_episode_steps=tokens + 1, **env_kwargs)
    env.reset(options={"problem_index": 0})
    actions = np.random.default_rng(0).integers(0, env.action_space.n, size=tokens)
    started = time.perf_counter()
    for action in actions:
        env.step(action)
    return tokens / (time.perf_counter() - started)


def time_vector_env(num_envs: int, env_kwargs: dict[str, Any], tokens: int) -> float:
    vector = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
                          max_episode_steps=tokens + 1, **env_kwargs)  # fmt: skip
    vector.reset(options=[{"problem_index": i} for i in range(num_envs)])
    actions = np.random.default_rng(0).integers(0, vector.single_action_space.n, size=(tokens, num_envs))
    started = time.perf_counter()
    for step_actions in actions:
        vector.step(step_actions)
    return num_envs * tokens / (time.perf_counter() - started)


def time_ppo_rollout(num_envs: int, env_kwargs: dict[str, Any], tokens: int) -> float:
    from stable_baselines3 import PPO

    from cola_agents.sb3 import make_sb3_env

    env = make_sb3_env(ENV_ID, n_envs=num_envs, seed=0, max_episode_steps=tokens + 1, **env_kwargs)
    env.set_options([{"problem_index": i} for i in range(num_envs)])
    agent = PPO("MlpPolicy", env, n_steps=tokens, batch_size=num_envs * tokens, seed=0, device="cpu")
    _, callback = agent._setup_learn(num_envs * tokens, callback=None)
    callback.on_training_start(locals(), globals())
    started = time.perf_counter()
    agent.collect_rollouts(agent.env, callback, agent.rollout_buffer, n_rollout_steps=tokens)
    return num_envs * tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="CoLA checkpoint (default: the default model)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--tokens", type=int, default=32, help="tokens per row and measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/throughput.json")
    args = parser.parse_args()

    env_kwargs: dict[str, Any] = {"model": args.model}
    if args.data_dir:
        env_kwargs["data_dir"] = args.data_dir
    model = shared_model(args.model)
    prompts = prompts_of(model, max(args.batch_sizes), env_kwargs)
    speeds: dict[str, dict[int, list[float]]] = {
        k: {b: [] for b in args.batch_sizes} for k in ("generate", "single_env", "vector_env", "ppo_rollout")
    }
    for round_index in range(args.rounds + 1):  # round 0 warms up
        for batch in args.batch_sizes:
            measured = {
                "generate": time_generate(model, prompts[:batch], args.tokens),
                "vector_env": time_vector_env(batch, env_kwargs, args.tokens),
                "ppo_rollout": time_ppo_rollout(batch, env_kwargs, args.tokens),
            }
            if batch == 1:
                measured["single_env"] = time_single_env(env_kwargs, args.tokens)
            if round_index:
                for name, value in measured.items():
                    speeds[name][batch].append(value)
            print(
                f"round {round_index} batch {batch}: " + "  ".join(f"{k} {v:.1f}" for k, v in measured.items()),
                flush=True,
            )
    table = {name: {str(b): statistics.median(v) for b, v in per.items() if v} for name, per in speeds.items()}
    ratios = {
        f"vector_env/generate@{b}": table["vector_env"][str(b)] / table["generate"][str(b)] for b in args.batch_sizes
    }
    ratios.update({f"ppo_rollout/vector_env@{b}": table["ppo_rollout"][str(b)] / table["vector_env"][str(b)]
                   for b in args.batch_sizes})  # fmt: skip
    if 1 in args.batch_sizes and 16 in args.batch_sizes:
        ratios["vector_env@16/vector_env@1"] = table["vector_env"]["16"] / table["vector_env"]["1"]
    if 1 in args.batch_sizes:
        ratios["single_env/generate@1"] = table["single_env"]["1"] / table["generate"]["1"]
    report = {"model": args.model or "default", "tokens": args.tokens, "rounds": args.rounds,
              "tokens_per_s": table, "ratios": ratios, "torch_threads": torch.get_num_threads()}  # fmt: skip
    write_report(report, args.out, _plot)


def _plot(report: dict[str, Any], path: Path) -> None:
    batches = [int(b) for b in report["tokens_per_s"]["generate"]]
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    styles = {"generate": ("HF generate (bare decoder)", "#888888", "o"), "vector_env": ("vector env", "#1f77b4", "s"),
              "ppo_rollout": ("SB3 PPO rollout", "#ff7f0e", "^")}  # fmt: skip
    for name, (label, color, marker) in styles.items():
        ax.plot(batches, [report["tokens_per_s"][name][str(b)] for b in batches], marker=marker, color=color,
                label=label)  # fmt: skip
    if "1" in report["tokens_per_s"]["single_env"]:
        ax.scatter([1], [report["tokens_per_s"]["single_env"]["1"]], color="#2ca02c", zorder=3, label="single env")
    ax.set_xlabel("batch size (envs)")
    ax.set_ylabel("tokens / s")
    ax.set_xticks(batches)
    ax.set_title("decoding throughput, default model on this machine", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
