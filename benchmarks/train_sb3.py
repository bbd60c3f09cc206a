"""Train a stock SB3 / sb3-contrib algorithm on a CoLA env, with evaluation and plots.

    python benchmarks/train_sb3.py --algo PPO --env CoLA-GSM8K-Train-v0 --steps 20000 --n-envs 16 --prior

Writes to ``--out`` (default ``runs/sb3/<algo>-<env>-seed<seed>``): TensorBoard logs
(SB3's own scalars plus ``rollout/accuracy`` and ``eval/accuracy``), the trained agent
(``agent.zip``), ``results.json`` and ``learning_curve.png``. ``--prior`` starts from the
CoLA policy (``observation="hidden+prior"`` with a prior-initialised policy) and
``--prior-kl`` adds the KL-to-prior penalty (and the matching entropy coefficient).
Held-out problems are evaluated greedily every ``--eval-every`` steps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import pyplot, save_figure
from sb3_contrib import ARS, QRDQN, TRPO, MaskablePPO, RecurrentPPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback

from cola_agents.evaluation import evaluate
from cola_agents.policies import CoLAMaskablePriorPolicy, CoLAPriorPolicy, CoLARecurrentPriorPolicy
from cola_agents.sb3 import make_sb3_env

# algorithm -> (class, default policy, prior policy or None)
ALGORITHMS: dict[str, tuple[Any, str, Any]] = {
    "PPO": (PPO, "MlpPolicy", CoLAPriorPolicy),
    "A2C": (A2C, "MlpPolicy", CoLAPriorPolicy),
    "TRPO": (TRPO, "MlpPolicy", CoLAPriorPolicy),
    "MaskablePPO": (MaskablePPO, "MlpPolicy", CoLAMaskablePriorPolicy),
    "RecurrentPPO": (RecurrentPPO, "MlpLstmPolicy", CoLARecurrentPriorPolicy),
    "DQN": (DQN, "MlpPolicy", None),
    "QR-DQN": (QRDQN, "MlpPolicy", None),
    "ARS": (ARS, "LinearPolicy", None),
}
ON_POLICY = {"PPO", "A2C", "TRPO", "MaskablePPO", "RecurrentPPO"}


class AccuracyCallback(BaseCallback):
    """Logs the task accuracy of finished episodes and evaluates held-out problems periodically."""

    def __init__(self, eval_every: int, evaluate_now: Any) -> None:
        super().__init__()
        self.eval_every = eval_every
        self.evaluate_now = evaluate_now
        self.curve: list[dict[str, float]] = []
        self._next_eval = eval_every

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "episode" in info and "is_success" in info:
                self.logger.record_mean("rollout/accuracy", float(info["is_success"]))
        if self.eval_every and self.num_timesteps >= self._next_eval:
            self._next_eval += self.eval_every
            self._evaluate()
        return True

    def _evaluate(self) -> None:
        summary = self.evaluate_now(self.model)
        for key, value in summary.items():
            self.logger.record(f"eval/{key}", value)
        episodes = list(self.model.ep_info_buffer)
        train_accuracy = float(np.mean([e.get("is_success", 0.0) for e in episodes])) if episodes else 0.0
        self.curve.append({"timesteps": self.num_timesteps, "eval_accuracy": summary["accuracy"],
                           "train_accuracy": train_accuracy, "eval_mean_tokens": summary["mean_tokens"]})  # fmt: skip
        self.logger.dump(self.num_timesteps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=sorted(ALGORITHMS), default="PPO")
    parser.add_argument("--env", default="CoLA-GSM8K-Train-v0")
    parser.add_argument("--eval-env", default="CoLA-GSM8K-v0", help="held-out env (its test split)")
    parser.add_argument("--eval-problems", type=int, default=32, help="first N held-out problems")
    parser.add_argument("--eval-every", type=int, default=2048, help="timesteps between evaluations")
    parser.add_argument("--steps", type=int, default=20_000, help="total timesteps (tokens)")
    parser.add_argument("--n-envs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-episode-steps", type=int, default=None, help="token limit (default: the env's)")
    parser.add_argument("--prior", action="store_true", help="start from the CoLA policy (hidden+prior observations)")
    parser.add_argument("--prior-kl", type=float, default=0.0, help="KL-to-prior coefficient (also ent_coef)")
    parser.add_argument("--model", default=None, help="CoLA checkpoint (default: the default model)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    algorithm, policy, prior_policy = ALGORITHMS[args.algo]
    if args.prior and prior_policy is None:
        parser.error(f"--prior needs an actor-critic algorithm ({', '.join(sorted(ON_POLICY))})")
    env_kwargs: dict[str, Any] = {"model": args.model}
    if args.data_dir:
        env_kwargs["data_dir"] = args.data_dir
    if args.prior:
        env_kwargs["observation"] = "hidden+prior"
    train_kwargs = dict(env_kwargs, prior_kl_coef=args.prior_kl)
    if args.max_episode_steps:
        train_kwargs["max_episode_steps"] = args.max_episode_steps
    out = Path(args.out or f"runs/sb3/{args.algo}-{args.env}-seed{args.seed}{'-prior' if args.prior else ''}")
    out.mkdir(parents=True, exist_ok=True)

    env = make_sb3_env(args.env, n_envs=args.n_envs, seed=args.seed, **train_kwargs)
    hyper: dict[str, Any] = {"seed": args.seed, "tensorboard_log": str(out / "tensorboard"), "verbose": 0}
    if args.algo in ON_POLICY:
        hyper["n_steps"] = max(8, 256 // args.n_envs)
    if args.prior_kl and args.algo in ON_POLICY:
        hyper["ent_coef"] = args.prior_kl  # with the env's beta*log pi_prior reward: exactly -beta*KL
    agent = algorithm(prior_policy if args.prior else policy, env, **hyper)

    def evaluate_now(model: Any) -> dict[str, float]:
        eval_kwargs = dict(env_kwargs)
        if args.max_episode_steps:
            eval_kwargs["max_episode_steps"] = args.max_episode_steps
        return evaluate(model, args.eval_env, range(args.eval_problems), n_envs=min(args.n_envs, args.eval_problems),
                        show_progress=True, **eval_kwargs).summary()  # fmt: skip

    callback = AccuracyCallback(args.eval_every, evaluate_now)
    started = time.perf_counter()
    initial = evaluate_now(agent)
    callback.curve.append({"timesteps": 0, "eval_accuracy": initial["accuracy"], "train_accuracy": 0.0,
                           "eval_mean_tokens": initial["mean_tokens"]})  # fmt: skip
    agent.learn(args.steps, callback=callback, progress_bar=True, tb_log_name=args.algo)
    final = evaluate_now(agent)
    seconds = time.perf_counter() - started
    callback.curve.append({"timesteps": agent.num_timesteps, "eval_accuracy": final["accuracy"],
                           "train_accuracy": callback.curve[-1]["train_accuracy"],
                           "eval_mean_tokens": final["mean_tokens"]})  # fmt: skip
    agent.save(out / "agent")
    results = {"args": vars(args), "initial_eval": initial, "final_eval": final, "curve": callback.curve,
               "seconds": seconds, "timesteps_per_s": agent.num_timesteps / seconds}  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=2))
    _plot(callback.curve, f"{args.algo}{' + prior' if args.prior else ''} on {args.env}", out / "learning_curve.png")
    print(json.dumps({k: results[k] for k in ("initial_eval", "final_eval", "seconds")}, indent=2))
    print(f"results: {out}/results.json, plot: {out}/learning_curve.png, TensorBoard: {out}/tensorboard")


def _plot(curve: list[dict[str, float]], title: str, path: Path) -> None:
    plt = pyplot()

    steps = [point["timesteps"] for point in curve]
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(steps, [p["eval_accuracy"] for p in curve], marker="o", label="held-out accuracy (greedy)")
    ax.plot(steps, [p["train_accuracy"] for p in curve], marker=".", label="training episodes accuracy")
    ax.set_xlabel("timesteps (tokens)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
