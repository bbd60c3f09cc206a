"""Whether training changed the language model: held-out perplexity and a reasoning level, per decoder.

RL in cola-gym (over latent codes, or over tokens in the token twins) trains an agent's policy
only: the decoder an agent decodes with is the CoLA model's, unchanged (``tests`` check its
parameters bit for bit after PPO and GRPO). Stage 2 is different: it fine-tunes the decoder with
a LoRA adapter on one task's text, so a task's default model may have moved away from the base
decoder. For each model named, this measures its decoder:

- a fingerprint (SHA-256 of every decoder parameter, adapters merged), so equal decoders show;
- **held-out text perplexity**: the reference solutions of GSM8K's test split after their
  questions, under the bare decoder (no latent codes), text none of the models trained on;
- **a reasoning level's success**: the decoder's own greedy answers (the token twin of
  ``--reasoning-env``, argmax of the decoder at every step) on its first ``--problems`` problems,
  and, where its answers fall in a few classes (yes / no), the balanced success (the mean over
  answer classes, so a constant answer scores 1 / classes; see ``balanced_accuracy.py``).

    python benchmarks/decoder_preserved.py --out benchmarks/results/decoder-preserved.json

Needs GSM8K's test split under ``--data-dir`` or ``$COLA_DATA_DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from _report import pyplot, save_figure, write_report
from balanced_accuracy import balanced, references
from claims import decoder_perplexity
from headroom import ObservedPrior
from tqdm import tqdm

import cola_gym
from cola_agents.evaluation import evaluate
from cola_gym.envs.observation import ObservationLayout
from cola_gym.model import shared_model
from cola_gym.registration import entry, task_for

PRETRAINED = Path(cola_gym.__file__).parent / "pretrained"
MAX_CLASSES = 10
"""Balanced success is reported where the level's reference answers take at most this many values."""
DEFAULT_MODELS = ("smollm2-135m-instruct", "smollm2-135m-instruct-household", "smollm2-135m-instruct-countdown")


def model_path(name: str) -> str:
    """A shipped model's folder (by its folder name under ``cola_gym/pretrained``), else the path as given."""
    shipped = PRETRAINED / name
    if shipped.is_dir():
        return str(shipped)
    if not Path(name).expanduser().is_dir():
        raise SystemExit(f"no model {name!r}: neither a folder under {PRETRAINED} nor a CoLA checkpoint folder")
    return name


def fingerprint(decoder: torch.nn.Module) -> str:
    """SHA-256 over the decoder's parameters in name order (dtype and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(decoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def measure(
    name: str, texts: list[tuple[str, str]], reasoning_env: str, problems: int, batch: int, env_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """One model's decoder: fingerprint, held-out perplexity of ``texts`` and greedy success on ``reasoning_env``."""
    path = model_path(name)
    model = shared_model(path)
    questions, solutions = [q for q, _ in texts], [s for _, s in texts]
    perplexity = decoder_perplexity(model, questions, solutions)
    twin = entry(reasoning_env).token_twin or reasoning_env
    env_kwargs = {**env_kwargs, "model": path, "observation": "hidden+prior"}
    probe = gym.make(twin, **env_kwargs)
    layout = ObservationLayout.of(probe.observation_space)
    probe.close()
    greedy = evaluate(ObservedPrior(layout), twin, range(problems), n_envs=batch, deterministic=True, **env_kwargs)
    successes = [bool(s) for s in greedy.successes]
    labels = references(reasoning_env, problems)
    few_classes = labels is not None and len(set(labels)) <= MAX_CLASSES
    return {
        "path": path,
        "adapter": model.decoder_adapter is not None,
        "decoder_sha256": fingerprint(model.decoder),
        "held_out_perplexity": perplexity,
        "reasoning_greedy_success": greedy.success_rate,
        "reasoning_balanced_success": balanced(successes, labels) if few_classes and labels else None,
        "reasoning_successes": successes,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [f"| model | decoder | held-out perplexity ({report['texts']} GSM8K test solutions) "
             f"| {report['reasoning_env']} greedy ({report['problems']} problems) | balanced | decoder SHA-256 |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, row in report["models"].items():
        kind = "base + stage-2 LoRA" if row["adapter"] else "base"
        balanced_success = row["reasoning_balanced_success"]
        balanced_cell = "-" if balanced_success is None else f"{balanced_success:.1%}"
        lines.append(f"| {name} | {kind} | {row['held_out_perplexity']:.3f} | {row['reasoning_greedy_success']:.1%} "
                     f"| {balanced_cell} | `{row['decoder_sha256'][:12]}` |")  # fmt: skip
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    names = list(report["models"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    panels = (("held_out_perplexity", "held-out perplexity"),
              ("reasoning_greedy_success", f"{report['reasoning_env']} greedy success"))  # fmt: skip
    for ax, (key, label) in zip(axes, panels, strict=True):
        ax.barh(names, [report["models"][n][key] for n in names], color="tab:blue")
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    axes[1].set_yticks([])
    fig.suptitle("each model's decoder on text and a reasoning level none of them trained on")
    save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_MODELS),
        help="shipped model names (folders of cola_gym/pretrained) or CoLA checkpoint folders",
    )
    parser.add_argument("--texts", type=int, default=64, help="GSM8K test solutions scored")
    parser.add_argument("--reasoning-env", default="CoLA-Syllogism-Easy-v0", help="a reasoning level's id")
    parser.add_argument("--problems", type=int, default=64, help="its held-out problems 0..N-1")
    parser.add_argument("--batch", type=int, default=16, help="episodes decoded together")
    parser.add_argument("--max-steps", type=int, default=None, help="tokens per episode (default: the id's limit)")
    parser.add_argument("--data-dir", default=None, help="folder with GSM8K (default: $COLA_DATA_DIR)")
    parser.add_argument("--out", default="benchmarks/results/decoder-preserved.json")
    args = parser.parse_args(argv)
    if args.texts < 1 or args.problems < 1 or args.batch < 1 or (args.max_steps is not None and args.max_steps < 1):
        parser.error("--texts, --problems, --batch and --max-steps must be >= 1")
    if args.reasoning_env not in gym.registry:
        parser.error(f"unknown id {args.reasoning_env!r}")
    problems = task_for("CoLA-GSM8K-v0", data_dir=args.data_dir).problems[: args.texts]  # type: ignore[attr-defined]
    texts = [(p.problem, p.solution or p.answer) for p in problems]
    env_kwargs = {} if args.max_steps is None else {"max_episode_steps": args.max_steps}
    report: dict[str, Any] = {"texts": len(texts), "reasoning_env": args.reasoning_env, "problems": args.problems,
                              "models": {}, "cola_gym": cola_gym.__version__}  # fmt: skip
    for name in tqdm(args.models, desc="models", unit="model"):
        report["models"][name] = measure(name, texts, args.reasoning_env, args.problems,
                                         min(args.batch, args.problems), env_kwargs)  # fmt: skip
    base = next(iter(report["models"].values()))
    for row in report["models"].values():
        row["perplexity_vs_first"] = row["held_out_perplexity"] / base["held_out_perplexity"]
        row["same_decoder_as_first"] = row["decoder_sha256"] == base["decoder_sha256"]
    report["mean_reasoning_success"] = statistics.mean(r["reasoning_greedy_success"] for r in report["models"].values())
    write_report(report, args.out, plot)
    print(markdown(report))


if __name__ == "__main__":
    main()
