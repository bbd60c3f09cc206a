"""How much an RL agent could gain on a task, measured on its prior before any training.

- **pass@k of the prior**: each held-out problem sampled n times from the CoLA policy (or,
  for a token twin, the decoder); pass@k is the chance that k of those samples include a right
  answer (unbiased estimator). pass@1 is where sampling RL starts; pass@k for large k bounds what
  re-weighting the prior's own choices can reach (problems it never solves need new behaviour).
  Also: greedy success and how many problems are solved never, sometimes or always.
- **code aliasing** (latent ids): at every step of the prior's episodes, how many distinct
  tokens the K codes write, and the prior's entropy over codes against its entropy over the
  tokens those codes write. Where every code writes one token, the choice of code changes
  nothing; a per-code policy gradient is pure noise there (see GRPO's ``merge_aliases``).

    python benchmarks/headroom.py --env CoLA-Micro-Countdown-Medium-v0 --problems 128 --samples 16

Writes ``--out`` (JSON), a PNG of pass@k beside it, and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from _report import pyplot, save_figure, write_report
from tqdm import tqdm

import cola_gym
from cola_agents.evaluation import evaluate
from cola_gym.envs.observation import ObservationLayout


def pass_at_k(successes: np.ndarray) -> dict[int, float]:
    """``successes [n samples, problems]`` -> {k: pass@k}, the unbiased estimator of Chen et al. (2021).

    Per problem with c of n samples right, ``1 - C(n - c, k) / C(n, k)``: the chance that k
    samples drawn without replacement include a right one; averaged over problems. k runs
    over 1, 2, 4, ... and n; pass@1 is the mean success.
    """
    samples = successes.shape[0]
    right = successes.sum(axis=0)
    ks = sorted({*(2**i for i in range(samples.bit_length()) if 2**i <= samples), samples})
    return {k: float(np.mean([1.0 - math.comb(samples - c, k) / math.comb(samples, k) for c in right])) for k in ks}


def aliasing(env_id: str, problems: Sequence[int], batch: int, env_kwargs: dict[str, Any]) -> dict[str, float]:
    """Per-step aliasing statistics over the prior's sampled episodes on ``problems``."""
    distinct, code_entropy, token_entropy = [], [], []
    for first in range(0, len(problems), batch):
        chunk = list(problems[first : first + batch])
        vector = gym.make_vec(env_id, num_envs=len(chunk), vectorization_mode="vector_entry_point",
                              observation="hidden+prior", **env_kwargs)  # fmt: skip
        base = vector.unwrapped
        model = base.model
        vector.reset(options=[{"task_index": i} for i in chunk])  # type: ignore[arg-type]
        finished = np.zeros(len(chunk), dtype=bool)
        while not finished.all():
            state = base.decoding_state
            assert state.policy_logits is not None
            probs = torch.softmax(state.policy_logits.float(), -1).cpu()
            tokens = model.tokens_of_every_action(state.hidden).cpu()
            for row in np.flatnonzero(~finished):
                kinds, classes = torch.unique(tokens[row], return_inverse=True)
                per_token = torch.zeros(len(kinds)).index_add_(0, classes, probs[row])
                distinct.append(len(kinds))
                code_entropy.append(float(-(probs[row] * probs[row].clamp_min(1e-12).log()).sum()))
                token_entropy.append(float(-(per_token * per_token.clamp_min(1e-12).log()).sum()))
            actions = torch.distributions.Categorical(probs=probs).sample().numpy()
            _, _, terminated, truncated, _ = vector.step(actions)
            finished |= terminated | truncated
        vector.close()
    counts = np.asarray(distinct)
    return {"steps": len(counts), "mean_distinct_tokens": float(counts.mean()),
            "steps_with_a_choice": float((counts > 1).mean()), "code_entropy": float(np.mean(code_entropy)),
            "token_entropy": float(np.mean(token_entropy))}  # fmt: skip


class ObservedPrior:
    """Samples the prior read from ``observation="hidden+prior"`` observations (the CoLA policy's
    log-probabilities, or the decoder's on token twins) over every action, or takes its argmax.

    Not :class:`~cola_agents.agents.PriorAgent`: that one samples the top k only, and bound to an
    env (as ``evaluate`` binds it) reads the policy's logits, which token twins do not track.
    """

    def __init__(self, layout: ObservationLayout, seed: int = 0) -> None:
        if not layout.prior:
            raise ValueError("ObservedPrior needs observations with the prior (observation='hidden+prior')")
        self.layout = layout
        self.generator = torch.Generator().manual_seed(seed)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:  # fmt: skip
        _, prior = self.layout.split(np.atleast_2d(observation))
        logits = torch.as_tensor(prior, dtype=torch.float32)
        if deterministic:
            return logits.argmax(-1).numpy(), None
        return torch.multinomial(logits.softmax(-1), 1, generator=self.generator).squeeze(-1).numpy(), None


def measure(env_id: str, problems: int, samples: int, batch: int, seed: int, env_kwargs: dict[str, Any]) -> dict:
    """pass@k, greedy success, solved shares and (latent ids) aliasing of the prior on problems 0..N-1."""
    env_kwargs = {**env_kwargs, "observation": "hidden+prior"}  # the prior: the CoLA policy, or the decoder
    probe = gym.make(env_id, **env_kwargs)
    layout = ObservationLayout.of(probe.observation_space)
    latent = probe.unwrapped.action_kind == "latent"  # type: ignore[attr-defined]
    probe.close()
    indices = range(problems)
    runs = []
    for sample in tqdm(range(samples), desc=f"sampling {env_id}", unit="pass"):
        agent = ObservedPrior(layout, seed=seed * 1_000_003 + sample)
        runs.append(evaluate(agent, env_id, indices, n_envs=batch, deterministic=False, **env_kwargs).successes)
    successes = np.asarray(runs, dtype=bool)
    greedy = evaluate(ObservedPrior(layout), env_id, indices, n_envs=batch, deterministic=True, **env_kwargs)
    per_problem = successes.mean(axis=0)
    report: dict[str, Any] = {
        "env": env_id, "problems": problems, "samples": samples, "greedy": greedy.success_rate,
        "pass_at_k": pass_at_k(successes),
        "problems_solved": {"never": float((per_problem == 0).mean()), "always": float((per_problem == 1).mean()),
                            "sometimes": float(((per_problem > 0) & (per_problem < 1)).mean())},
    }  # fmt: skip
    if latent:  # latent codes can alias; tokens cannot
        torch.manual_seed(seed)
        kwargs = {k: v for k, v in env_kwargs.items() if k != "observation"}
        report["aliasing"] = aliasing(env_id, list(indices)[:batch], batch, kwargs)
    return report


def markdown(report: dict[str, Any]) -> str:
    ks = report["pass_at_k"]
    lines = ["| greedy | " + " | ".join(f"pass@{k}" for k in ks) + " | never / sometimes / always solved |",
             "| --- " * (len(ks) + 2) + "|"]  # fmt: skip
    solved = report["problems_solved"]
    lines.append(f"| {report['greedy']:.1%} | " + " | ".join(f"{v:.1%}" for v in ks.values())
                 + f" | {solved['never']:.0%} / {solved['sometimes']:.0%} / {solved['always']:.0%} |")  # fmt: skip
    if "aliasing" in report:
        a = report["aliasing"]
        lines += ["", f"Aliasing over {a['steps']} steps: {a['mean_distinct_tokens']:.2f} distinct tokens over the "
                  f"codes per step, {a['steps_with_a_choice']:.1%} of steps where the codes write more than one "
                  f"token; prior entropy {a['code_entropy']:.3f} nats over codes, {a['token_entropy']:.3f} over "
                  "tokens."]  # fmt: skip
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    ks = [int(k) for k in report["pass_at_k"]]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ks, [100 * v for v in report["pass_at_k"].values()], marker="o", label="pass@k of the prior")
    ax.axhline(100 * report["greedy"], color="gray", linestyle="--", label="greedy")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per problem (k)")
    ax.set_ylabel("problems solved (%)")
    ax.set_ylim(0, 100)
    ax.set_title(report["env"].removeprefix("CoLA-"))
    ax.legend()
    save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CoLA-Micro-Countdown-Medium-v0", help="a cola-gym id with indexed problems")
    parser.add_argument("--problems", type=int, default=128, help="held-out problems 0..N-1")
    parser.add_argument("--samples", type=int, default=16, help="samples per problem (k)")
    parser.add_argument("--batch", type=int, default=32, help="episodes decoded together")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="CoLA checkpoint (default: the id's model)")
    parser.add_argument("--max-steps", type=int, default=None, help="tokens per episode (default: the id's limit)")
    parser.add_argument("--out", default="benchmarks/results/headroom.json")
    args = parser.parse_args(argv)
    if args.problems < 1 or args.samples < 1 or args.batch < 1:
        parser.error("--problems, --samples and --batch must be >= 1")
    if args.env not in gym.registry:
        parser.error(f"unknown id {args.env!r}")
    env_kwargs: dict[str, Any] = {"model": args.model} if args.model else {}
    if args.max_steps:
        env_kwargs["max_episode_steps"] = args.max_steps
    report = measure(args.env, args.problems, args.samples, min(args.batch, args.problems), args.seed, env_kwargs)
    report["cola_gym"] = cola_gym.__version__
    write_report(report, args.out, plot)
    print(markdown(report))


if __name__ == "__main__":
    main()
