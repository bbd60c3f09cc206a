"""Builds the micro Countdown verifier from the shipped micro model: the Q-network MCTS-Q and
best-of-N rank answers with in ``search_scaling.py``, in one resumable command.

    .venv/bin/python benchmarks/countdown_verifier.py --out runs/countdown-verifier --jobs 2 \
        --ship cola_gym/pretrained/micro-countdown-verifier

The recipe (every id a ``-Train-`` one; the held-out ids are never read):

1. policy samples: 4,096 problems x 16 at temperature 0.5, 8,192 more x 4, and the first
   4,096 x 4 at the release's sampling (temperature 1, top-k 40): 114,688 episodes;
2. a 4-block Q-network regressed on their outcomes (stage q, Monte Carlo targets, 6,000 steps);
3. every distinct answer of MCTS-Q trees grown with it on 4,096 fresh problems (16x budget,
   every rollout decoded and paid for, macro steps on: the search of that time);
4. 3,000 more steps on samples and tree answers with the pairwise ranking loss (weight 5),
   so it learns to rank one problem's answers, the tree's near misses included
   (``q-ranked``: the shipped verifier).

With ``--rounds 2``, a second round on the trees of the tuned search:

5. every distinct answer of the trees the tuned search grows with that verifier on 4,096
   more fresh problems (16x budget, rollouts paid once, macro steps off: about 16 answers a
   tree, the near misses it would pick among);
6. 3,000 more steps of the ranking loss on samples and both tree sets (``q-ranked-2``).

On 1,024 tuning problems the second round lifted MCTS-Q by 1.0 / 2.6 points at 8x / 16x; on
the held-out problems it moved nothing (-0.8 / +1.1), so the first round's network ships.

Selection sets (128 problems: samples and trees) are evaluated during training. Each step
resumes: a collection skips the problems its file holds, a training run continues from its
last checkpoint, and a finished step is skipped. ``--jobs 2`` runs independent steps side
by side, sharing the cores (a step that runs alone gets them all). ``--ship DIR`` then writes
the verifier to DIR as a model of its own, referring to the micro model's decoder (the shipped
one is ``cola_gym/pretrained/micro-countdown-verifier``; the micro model itself keeps its
10 MB budget).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cola_gym.registration import pretrained_path

ENV = "CoLA-Micro-Countdown-Medium-Train-v0"
SAMPLING = ["--batch-problems", "32", "--max-tokens", "64"]
SEARCH = ["--search", "--token-budget", "320", "--num-simulations", "4096", "--leaf-value", "q_network",
          "--leaf-q", "path_mean", "--rollout-policy", "greedy", "--max-tokens", "64", "--parallel-expansions", "4",
          "--no-stop-on-finished-answer", "--batch-problems", "32"]  # fmt: skip
TREES = [*SEARCH, "--no-reuse-greedy-rollouts"]
"""The first trees: every rollout decoded, macro steps on (as when the first verifier was built)."""
TUNED_TREES = [*SEARCH, "--reuse-greedy-rollouts", "--macro-td-threshold", "0"]
"""The second trees: the tuned search (rollouts paid once, macro steps off)."""
VERIFIER = {1: "q-ranked", 2: "q-ranked-2"}
"""The step whose network is the verifier, by rounds."""
TRAINING = ["--stage", "q", "--q-targets", "monte_carlo", "--batch-size", "32", "--seq-len", "160",
            "--warmup-steps", "50", "--eval-every", "1000"]  # fmt: skip


@dataclass(frozen=True)
class Step:
    """One command of the recipe: what it writes (``name``, in the working folder) and what it needs first."""

    name: str
    args: list[str]
    needs: tuple[str, ...] = ()
    concatenate: tuple[str, ...] = ()
    """Episode files joined into ``--episodes`` before a training step runs."""

    def done(self, out: Path) -> bool:
        """A training run is done when its final model exists; a collection when its summary does."""
        target = out / self.name
        return (target / "final" / "cola_config.json").is_file() if self.is_training else _summary(target).is_file()

    @property
    def is_training(self) -> bool:
        return self.args[0] == "train"


def recipe(out: Path, rounds: int = 1) -> list[Step]:
    """The steps of ``rounds`` rounds of tree answers (1 or 2), in an order that respects their needs."""
    model = pretrained_path("micro-countdown")
    mc, ranked = out / "q-mc" / "final", out / "q-ranked" / "final"

    def collect(name: str, first: int, problems: int, samples: int, extra: list[str], needs: tuple[str, ...] = ()):
        args = ["collect-episodes", "--env", ENV, "--first-problem", str(first), "--problems", str(problems),
                "--samples", str(samples), *extra, "--out", str(out / name)]  # fmt: skip
        return Step(name, args, needs)

    samples = ("samples-t05-16.jsonl", "samples-t05-4.jsonl", "samples-t1-4.jsonl")
    regress = ["train", *TRAINING, "--model", model, "--q-layers", "4", "--steps", "6000",
               "--episodes", str(out / "samples.jsonl"), "--eval-episodes", str(out / "select-samples.jsonl"),
               "--out", str(out / "q-mc")]  # fmt: skip
    rank = ["train", *TRAINING, "--model", str(mc), "--q-ranking-weight", "5", "--steps", "3000",
            "--episodes", str(out / "samples-and-trees.jsonl"), "--eval-episodes", str(out / "select-trees.jsonl"),
            "--out", str(out / "q-ranked")]  # fmt: skip
    rank_again = ["train", *TRAINING, "--model", str(ranked), "--q-ranking-weight", "5", "--steps", "3000",
                  "--episodes", str(out / "samples-and-both-trees.jsonl"),
                  "--eval-episodes", str(out / "select-trees-2.jsonl"), "--out", str(out / VERIFIER[2])]  # fmt: skip
    first = [
        collect(samples[0], 0, 4096, 16, ["--rollout-temperature", "0.5", "--seed", "1", *SAMPLING]),
        collect(samples[1], 16384, 8192, 4, ["--rollout-temperature", "0.5", "--seed", "3", *SAMPLING]),
        collect(samples[2], 0, 4096, 4, ["--seed", "0", *SAMPLING]),
        collect("select-samples.jsonl", 8192, 128, 16, ["--rollout-temperature", "0.5", "--seed", "2", *SAMPLING]),
        Step("q-mc", regress, needs=(*samples, "select-samples.jsonl"), concatenate=samples),
        collect("trees.jsonl", 24576, 4096, 1, ["--model", str(mc), *TREES], needs=("q-mc",)),
        collect("select-trees.jsonl", 8192, 128, 1, ["--model", str(mc), *TREES], needs=("q-mc",)),
        Step(
            "q-ranked",
            rank,
            needs=("trees.jsonl", "select-trees.jsonl"),
            concatenate=(*samples, "trees.jsonl"),
        ),
    ]
    second = [
        collect("trees-2.jsonl", 40960, 4096, 1, ["--model", str(ranked), *TUNED_TREES], needs=("q-ranked",)),
        collect("select-trees-2.jsonl", 8192, 128, 1, ["--model", str(ranked), *TUNED_TREES], needs=("q-ranked",)),
        Step(
            VERIFIER[2],
            rank_again,
            needs=("trees-2.jsonl", "select-trees-2.jsonl"),
            concatenate=(*samples, "trees.jsonl", "trees-2.jsonl"),
        ),
    ]
    if rounds not in VERIFIER:
        raise ValueError(f"rounds must be 1 or 2, got {rounds}")
    return first + (second if rounds == 2 else [])


def _summary(path: Path) -> Path:
    return path.with_name(path.name + ".summary.json")


def launch(step: Step, out: Path, threads: int) -> subprocess.Popen[bytes]:
    """Starts one step as a ``cola-gym`` process (its log beside its output)."""
    if step.concatenate:
        episodes = Path(step.args[step.args.index("--episodes") + 1])
        with open(episodes, "wb") as joined:
            for name in step.concatenate:
                joined.write((out / name).read_bytes())
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log = open(out / f"{step.name}.log", "ab")  # noqa: SIM115 - closed with the process
    command = [sys.executable, "-m", "cola_agents.cli", *step.args]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def run(out: Path, jobs: int, rounds: int = 1) -> None:
    """Runs every step not done yet, up to ``jobs`` at a time, each once its needs are done; the
    cores are shared among the steps started together (a step that runs alone gets them all)."""
    out.mkdir(parents=True, exist_ok=True)
    steps = recipe(out, rounds)
    cores = os.cpu_count() or 1
    running: dict[str, tuple[Step, subprocess.Popen[bytes], float, int]] = {}
    while True:
        pending = [s for s in steps if not s.done(out) and s.name not in running]
        if not pending and not running:
            return
        ready = [s for s in pending if all(next(d for d in steps if d.name == n).done(out) for n in s.needs)]
        starting = ready[: max(0, jobs - len(running))]
        for step in starting:
            free = cores - sum(threads for *_, threads in running.values())
            threads = max(1, free // (len(starting) - starting.index(step)))
            print(f"[{time.strftime('%H:%M:%S')}] {step.name}: started, {threads} thread(s) "
                  f"(log: {out / step.name}.log)", flush=True)  # fmt: skip
            running[step.name] = (step, launch(step, out, threads), time.perf_counter(), threads)
        if not running:
            raise RuntimeError(f"nothing can run: {', '.join(s.name for s in pending)} wait on unfinished steps")
        time.sleep(2)
        for name, (step, process, started, _) in list(running.items()):
            if process.poll() is None:
                continue
            del running[name]
            minutes = (time.perf_counter() - started) / 60
            if process.returncode != 0:
                raise RuntimeError(f"{name} failed (exit {process.returncode}); see {out / name}.log; "
                                   "run the same command again to resume")  # fmt: skip
            if not step.is_training:
                _summary(out / step.name).write_text(json.dumps(_last_json(out / f"{name}.log"), indent=2))
            print(f"[{time.strftime('%H:%M:%S')}] {name}: done in {minutes:.1f} min", flush=True)


def _last_json(log: Path) -> dict[str, float]:
    """The summary ``collect-episodes`` prints last."""
    text = log.read_text(errors="replace")
    return json.loads(text[text.rindex("\n{") + 1 :])


def ship(final: Path, target: Path, base: Path) -> None:
    """Writes the verifier as a model of its own at ``target``: the heads of the model at ``base``
    (which they must equal) with the Q-network, at the precision ``base`` stores its heads in,
    and ``base``'s stored decoder referred to by a relative path (so ``base`` stays as it is); the
    verifier's model card is copied unless ``target`` has one."""
    import shutil
    import tempfile

    import torch
    from safetensors import safe_open

    from cola_gym.model import CoLAModel
    from cola_gym.model.checkpoint import CONFIG_FILE, DECODER_DIR, HEADS_FILE

    shipped, verifier = CoLAModel.from_pretrained(base), CoLAModel.from_pretrained(final)
    if verifier.q_network is None:
        raise ValueError(f"{final} has no Q-network")
    for name, part in shipped.heads().items():
        theirs = verifier.heads()[name].state_dict()
        if name != "q_network" and any(not torch.equal(v, theirs[k]) for k, v in part.state_dict().items()):
            raise ValueError(f"{final}'s {name} differs from {base}'s: it was not trained from this model")
    with safe_open(str(base / HEADS_FILE), framework="pt") as stored:
        names = stored.keys()
        dtype = stored.get_tensor(names[0]).dtype
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        verifier.save_pretrained(scratch, dtype=dtype)
        shutil.copy(Path(scratch) / HEADS_FILE, target / HEADS_FILE)
        config = json.loads((Path(scratch) / CONFIG_FILE).read_text())
    config["decoder"] = {"name_or_path": os.path.relpath(base / DECODER_DIR, target), "stored": True}
    (target / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    for card in ("README.md", "training.json"):  # a card already there (written by hand) is kept
        if (final / card).is_file() and not (target / card).is_file():
            shutil.copy(final / card, target / card)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/countdown-verifier"), help="working folder")
    parser.add_argument("--jobs", type=int, default=1, help="steps run side by side (one per core)")
    parser.add_argument("--ship", type=Path, metavar="DIR",
                        help="then write the verifier to DIR as a model of its own (the micro Countdown "
                             "model's heads and decoder, and the Q-network)")  # fmt: skip
    parser.add_argument("--rounds", type=int, choices=sorted(VERIFIER), default=1,
                        help="rounds of tree answers: 2 adds trees of the tuned search and more "
                             "ranking steps (the shipped verifier is one round's)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    run(args.out, args.jobs, args.rounds)
    final = args.out / VERIFIER[args.rounds] / "final"
    print(f"verifier: {final}")
    if args.ship:
        ship(final, args.ship, Path(pretrained_path("micro-countdown")))
        print(f"written to {args.ship}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
