"""Group Relative Policy Optimization over latent actions, as a Stable-Baselines3 algorithm.

GRPO (Shao et al., 2024) needs no critic: it samples G episodes of the *same* problem, scores
each against its group (``A_i = (R_i - mean(R)) / (std(R) + eps)``), gives every step of an
episode its episode's advantage, and takes clipped-ratio policy-gradient steps, optionally
with a KL term towards the CoLA prior. Problems are fixed per group through the task's
``task_index`` reset option, so it runs on every cola-gym id, latent or token twin.

    from cola_agents.algorithms import GRPO
    from cola_agents.sb3 import make_sb3_env

    env = make_sb3_env("CoLA-Countdown-Easy-Train-v0", n_envs=16, observation="hidden+prior")
    agent = GRPO("MlpPolicy", env, group_size=8, tensorboard_log="runs/")
    agent.learn(50_000)
    agent.save("grpo_countdown")

Latent codes alias: from most prefixes many of the K codes make the world model write the
same token, so which of them was sampled says nothing about the episode. With
``merge_aliases=True`` each step is scored by the probability of the *token* it
wrote (the summed probability of every code that writes it from that state), so a step where
all codes agree carries no gradient at all instead of noise.

Multi-turn games give every turn of an episode the same credit, good commands and bad. With
``step_credit=w`` (GiGPO's step-level groups, Feng et al., 2025) the turns of a group's
episodes that start from the same world state (the task's ``anchor``: household games'
world states are immutable values, so equality is exact) are also compared with each other,
by their discounted return from that turn on (``step_gamma`` per turn), and each token's
advantage is its episode's plus ``w`` times its turn's.

It is used like SB3's ``PPO``: ``learn``, ``save`` / ``load``, ``predict``, callbacks,
TensorBoard, ``seed``. The budget (``total_timesteps``) counts every decoder step of every
row, including the steps of rows that wait, without an episode to play, for a rollout's last
episodes to end. On cola-gym vector envs a row starts its next episode as soon as its last one
ends, and the G rows of a group that start together share one prompt prefill.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, safe_mean
from torch import nn
from torch.nn import functional as F

from cola_agents.algorithms.grpo_policies import GroupPolicy

SelfGRPO = TypeVar("SelfGRPO", bound="GRPO")


@dataclass
class GroupRollout:
    """One rollout: every step of ``groups x group_size`` episodes, flattened.

    Attributes:
        observations: ``[S, ...]`` the observation before each step.
        actions: ``[S]``.
        log_probs: ``[S]`` the acting policy's log-probabilities.
        advantages: ``[S]`` the step's episode's group-relative advantage.
        returns: ``[groups, group_size]`` episode returns.
        successes: ``[groups, group_size]``.
        lengths: ``[groups, group_size]`` steps per episode.
    """

    observations: np.ndarray
    actions: np.ndarray
    log_probs: np.ndarray
    advantages: np.ndarray
    returns: np.ndarray
    successes: np.ndarray
    lengths: np.ndarray


START = ("episode start",)
"""The anchor of every episode's first turn: a group's episodes all start from one state."""


def anchor_advantages(
    groups: Sequence[int],
    anchors: Sequence[Hashable],
    returns: Sequence[float] | np.ndarray,
    scale: bool = True,
    eps: float = 1e-6,
) -> np.ndarray:
    """Per turn, ``(G - mean) / (std + eps)`` over the turns of its group that start from an equal
    anchor (``G``: the turn's return); 0 for a turn that no other turn of its group shares an anchor with."""
    members: dict[tuple[int, Hashable], list[int]] = {}
    for index, key in enumerate(zip(groups, anchors, strict=True)):
        members.setdefault(key, []).append(index)
    values = np.asarray(returns, dtype=np.float64)
    result = np.zeros(len(values))
    for indices in members.values():
        if len(indices) > 1:
            result[indices] = group_advantages(values[indices][None], scale, eps)[0]
    return result


def turn_returns(rewards: Sequence[float], gamma: float) -> np.ndarray:
    """``G_k = sum_{j >= k} gamma^(j - k) r_j`` of an episode's per-turn rewards."""
    out = np.zeros(len(rewards))
    running = 0.0
    for k in range(len(rewards) - 1, -1, -1):
        running = rewards[k] + gamma * running
        out[k] = running
    return out


def group_advantages(returns: np.ndarray, scale: bool = True, eps: float = 1e-6) -> np.ndarray:
    """``(R - mean) / (std + eps)`` within each row of ``returns [groups, G]`` (no scaling: ``R - mean``)."""
    centred = returns - returns.mean(axis=1, keepdims=True)
    if not scale:
        return centred
    return centred / (returns.std(axis=1, keepdims=True) + eps)


class GRPO(BaseAlgorithm):
    """Group Relative Policy Optimization (critic-free PPO with group-normalised returns).

    Args:
        policy: ``"MlpPolicy"`` (:class:`GroupPolicy`) or a policy class.
        env: a cola-gym SB3 ``VecEnv`` (``cola_agents.sb3.make_sb3_env``), any ``VecEnv`` or a
            single env whose reset takes the ``task_index`` option, or an id.
        learning_rate: Adam's step size (or a schedule of the remaining progress).
        group_size: G, episodes per problem.
        groups_per_rollout: problems per rollout (default: ``max(1, n_envs // G)``); the
            rollout runs in waves of ``n_envs`` episodes until every group is complete.
        n_epochs: passes over each rollout.
        batch_size: steps per gradient step.
        clip_range: epsilon of the clipped ratio (or a schedule of the remaining progress, as PPO's).
        kl_coef: beta of the exact per-step KL(pi || prior) term (needs the prior in the
            observation, ``observation="hidden+prior"``); 0 turns it off.
        ent_coef: entropy bonus.
        scale_advantages: divide by the group's standard deviation (GRPO); ``False`` only centres
            (Dr. GRPO).
        max_grad_norm: gradient clipping.
        merge_aliases: score each latent step by the probability of the token it wrote (all codes
            that write it from that state, summed); needs the env's CoLA model in this process
            (cola-gym envs made here); costs one world-model pass over all K codes per step
            (``[K, V]`` logits: cheap on small vocabularies). No effect on token twins.
        step_credit: weight of the turn-level advantage added to the episode's (0: off); needs a
            task with anchor states (``info["anchor"]``: the household games).
        step_gamma: discount per turn of the turn-level returns (shorter paths from a state score higher).
        task_indices: the problems to draw groups from (default: all of the task's).
        stats_window_size, tensorboard_log, policy_kwargs, verbose, seed, device: as in SB3.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": GroupPolicy}
    policy: GroupPolicy

    def __init__(
        self,
        policy: str | type[GroupPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-4,
        group_size: int = 8,
        groups_per_rollout: int | None = None,
        n_epochs: int = 2,
        batch_size: int = 256,
        clip_range: float | Schedule = 0.2,
        kl_coef: float = 0.0,
        ent_coef: float = 0.0,
        scale_advantages: bool = True,
        max_grad_norm: float = 0.5,
        merge_aliases: bool = False,
        step_credit: float = 0.0,
        step_gamma: float = 0.95,
        task_indices: Sequence[int] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(policy, env, learning_rate, policy_kwargs=policy_kwargs, stats_window_size=stats_window_size,
                         tensorboard_log=tensorboard_log, verbose=verbose, device=device, support_multi_env=True,
                         seed=seed, supported_action_spaces=(spaces.Discrete,))  # fmt: skip
        _check_int("group_size", group_size, 2, "advantages compare the episodes of a group")
        if groups_per_rollout is not None:
            _check_int("groups_per_rollout", groups_per_rollout, 1)
        _check_int("n_epochs", n_epochs, 1)
        _check_int("batch_size", batch_size, 1)
        if isinstance(clip_range, (int, float)) and not clip_range > 0:
            raise ValueError(f"clip_range must be > 0, got {clip_range}")
        if not (kl_coef >= 0 and max_grad_norm > 0):
            raise ValueError(f"need kl_coef >= 0 and max_grad_norm > 0, got {kl_coef} and {max_grad_norm}")
        if not (step_credit >= 0 and 0 < step_gamma <= 1):
            raise ValueError(f"need step_credit >= 0 and 0 < step_gamma <= 1, got {step_credit} and {step_gamma}")
        self.group_size = group_size
        n_envs = self.n_envs if self.env is not None else group_size  # loaded without an env: set on load
        self.groups_per_rollout = groups_per_rollout or max(1, n_envs // group_size)
        self.n_epochs, self.batch_size = n_epochs, batch_size
        self.clip_range: Schedule = FloatSchedule(clip_range)
        self.kl_coef, self.ent_coef = kl_coef, ent_coef
        self.scale_advantages, self.max_grad_norm = scale_advantages, max_grad_norm
        self.merge_aliases = merge_aliases
        self.step_credit, self.step_gamma = float(step_credit), float(step_gamma)
        self.turns_sharing_an_anchor = 0.0  # of the last rollout's turns, with step_credit
        self.task_indices = None if task_indices is None else [int(i) for i in task_indices]
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs)
        if not isinstance(policy, GroupPolicy):
            raise TypeError(f"GRPO trains a GroupPolicy (or a subclass), got {type(policy).__name__}")
        self.policy = policy.to(self.device)
        if self.kl_coef and not self.policy.use_prior:
            raise ValueError("kl_coef > 0 needs the prior in the observation: make the env with "
                             "observation='hidden+prior'")  # fmt: skip
        self._problem_rng = np.random.default_rng(self.seed)

    # ------------------------------------------------------------ rollouts
    def _num_tasks(self) -> int:
        assert self.env is not None
        count = self.env.get_attr("task", [0])[0].num_tasks
        if count is None:
            raise ValueError("GRPO fixes each group's problem with the task_index reset option; "
                             "this task has no indexed instances (num_tasks is None)")  # fmt: skip
        return int(count)

    def _draw_problems(self) -> list[int]:
        pool = self.task_indices
        if pool is not None:
            return [pool[i] for i in self._problem_rng.integers(len(pool), size=self.groups_per_rollout)]
        return [int(i) for i in self._problem_rng.integers(self._num_tasks(), size=self.groups_per_rollout)]

    def collect_rollouts(self, callback: BaseCallback) -> GroupRollout | None:
        """Runs ``groups_per_rollout`` groups of ``group_size`` episodes; ``None`` if a callback stopped.

        The episodes (slots) are dealt to the env's rows in order. On a cola-gym vector env a
        row whose episode ends starts the next slot in the same step (its
        ``autoreset_options``), so no row waits for the others; any other ``VecEnv`` runs in
        waves of ``n_envs`` slots, each started by a reset. Rows left without a slot run on
        (their steps count in the budget) until the last slot ends.
        """
        assert self.env is not None
        env, n_envs, group = self.env, self.n_envs, self.group_size
        problems = self._draw_problems()
        slots = [(g, member) for g in range(len(problems)) for member in range(group)]
        returns = np.zeros((len(problems), group))
        successes = np.zeros((len(problems), group), dtype=bool)
        lengths = np.zeros((len(problems), group), dtype=np.int64)
        observations: list[np.ndarray] = []
        actions_taken: list[np.ndarray] = []
        log_probs: list[np.ndarray] = []
        episode_of_step: list[int] = []
        queue = iter(range(len(slots)))
        slot_of_row: list[int | None] = [None] * n_envs
        turns = _Turns(slots) if self.step_credit else None
        dealt: dict[int, int] = {}  # row -> the slot its autoreset started, applied after the step

        def deal(row: int) -> dict[str, int]:
            slot = next(queue, None)
            if slot is not None:
                dealt[row] = slot
            return {"task_index": problems[slots[len(slots) - 1 if slot is None else slot][0]]}

        stream = _cola_vector_env(env)
        self.policy.set_training_mode(False)
        callback.on_rollout_start()
        obs: np.ndarray | None = None
        try:
            if stream is not None:
                stream.autoreset_options = deal
            while True:
                if not any(s is not None for s in slot_of_row):  # start a wave (the first, or the next)
                    env.set_options([deal(row) for row in range(n_envs)])
                    if not dealt:
                        break
                    obs = np.asarray(env.reset())
                    slot_of_row = [dealt.pop(row, None) for row in range(n_envs)]
                    if turns is not None:
                        turns.restart(slot_of_row)
                assert obs is not None
                with torch.no_grad():
                    actions, action_log_probs = self.policy(torch.as_tensor(obs, device=self.device))
                actions_np = actions.cpu().numpy()
                new_obs, rewards, dones, infos = env.step(actions_np)
                self.num_timesteps += n_envs
                callback.update_locals(locals())
                if not callback.on_step():
                    return None
                finished = []
                for row, slot in enumerate(slot_of_row):
                    if slot is None:
                        continue
                    g, member = slots[slot]
                    observations.append(np.asarray(obs[row]))
                    actions_taken.append(actions_np[row])
                    log_probs.append(action_log_probs[row].cpu().numpy())
                    episode_of_step.append(slot)
                    returns[g, member] += float(rewards[row])
                    lengths[g, member] += 1
                    if turns is not None:
                        turns.record(row, slot, float(rewards[row]), None if dones[row] else infos[row])
                    if dones[row]:
                        successes[g, member] = bool(infos[row].get("is_success", False))
                        slot_of_row[row] = None
                        finished.append(infos[row])
                if turns is not None:  # rows whose autoreset started a new episode in this step
                    turns.restart([dealt.get(row) for row in range(n_envs)])
                slot_of_row = [dealt.pop(row, slot) for row, slot in enumerate(slot_of_row)]
                self._update_info_buffer(finished, np.ones(len(finished), dtype=bool))
                obs = np.asarray(new_obs)
        finally:
            if stream is not None:
                stream.autoreset_options = None
        callback.on_rollout_end()
        advantages = group_advantages(returns, self.scale_advantages)
        per_slot = np.array([advantages[g, m] for g, m in slots], dtype=np.float32)
        step_advantages = per_slot[np.asarray(episode_of_step)]
        if turns is not None:
            per_turn = turns.advantages(self.step_gamma, self.scale_advantages)
            step_advantages = step_advantages + np.float32(self.step_credit) * per_turn
            self.turns_sharing_an_anchor = turns.shared_share
            self.logger.record("rollout/turns_sharing_an_anchor", turns.shared_share)
        return GroupRollout(np.stack(observations), np.asarray(actions_taken), np.asarray(log_probs, dtype=np.float32),
                            step_advantages, returns, successes, lengths)  # fmt: skip

    # ------------------------------------------------------------ updates
    def _world_model(self) -> Any:
        """The env's CoLA model when steps are scored by their tokens (latent actions), else ``None``."""
        if not self.merge_aliases or self.env is None:
            return None
        try:
            stepper = self.env.get_attr("stepper", [0])[0]
        except AttributeError as error:
            raise ValueError("merge_aliases=True reads the world model of the env: it needs a cola-gym env "
                             "made in this process") from error  # fmt: skip
        return stepper.model if stepper.action_kind == "latent" else None

    def alias_masks(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor | None:
        """``bool [S, K]``: the codes that write the same token as each step's action (``None``: no merging)."""
        model = self._world_model()
        if model is None:
            return None
        hidden, _ = self.policy.layout.split(observations)
        tokens = model.tokens_of_every_action(hidden).to(self.device).clone()  # a normal tensor
        return tokens == tokens.gather(1, actions.long().view(-1, 1))

    def train(self, rollout: GroupRollout) -> None:
        """``n_epochs`` passes of clipped policy-gradient steps over the rollout."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = float(self.clip_range(self._current_progress_remaining))
        steps = len(rollout.actions)
        obs = torch.as_tensor(rollout.observations, device=self.device)
        actions = torch.as_tensor(rollout.actions, device=self.device)
        old_log_probs = torch.as_tensor(rollout.log_probs, device=self.device)
        advantages = torch.as_tensor(rollout.advantages, device=self.device)
        aliases = self.alias_masks(obs, actions)
        if aliases is not None:  # the acting policy's probability of each step's token
            with torch.no_grad():
                parts = torch.arange(steps, device=self.device).split(self.batch_size)
                old_log_probs = torch.cat([_merged(self.policy.evaluate_actions(obs[part], actions[part])[2],
                                                   aliases[part]) for part in parts])  # fmt: skip
            self.logger.record("train/single_token_steps", float(aliases.all(-1).float().mean()))
        logs: dict[str, list[float]] = {"loss": [], "policy_gradient_loss": [], "entropy": [], "approx_kl": [],
                                        "clip_fraction": [], "kl_prior": []}  # fmt: skip
        for _ in range(self.n_epochs):
            order = torch.randperm(steps, device=self.device)
            for start in range(0, steps, self.batch_size):
                batch = order[start : start + self.batch_size]
                log_prob, entropy, log_probs_all = self.policy.evaluate_actions(obs[batch], actions[batch])
                if aliases is not None:
                    log_prob = _merged(log_probs_all, aliases[batch])
                ratio = torch.exp(log_prob - old_log_probs[batch])
                advantage = advantages[batch]
                clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
                policy_loss = -torch.min(ratio * advantage, clipped * advantage).mean()
                loss = policy_loss - self.ent_coef * entropy.mean()
                prior = self.policy.prior_log_probs(obs[batch])
                if prior is not None:
                    prior_log_probs = F.log_softmax(prior.float(), dim=-1)
                    kl_prior = (log_probs_all.exp() * (log_probs_all - prior_log_probs)).sum(-1).mean()
                    loss = loss + self.kl_coef * kl_prior
                    logs["kl_prior"].append(kl_prior.item())
                self.policy.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
                with torch.no_grad():
                    log_ratio = log_prob - old_log_probs[batch]
                    logs["approx_kl"].append(((ratio - 1) - log_ratio).mean().item())
                    logs["clip_fraction"].append(((ratio - 1).abs() > clip_range).float().mean().item())
                logs["loss"].append(loss.item())
                logs["policy_gradient_loss"].append(policy_loss.item())
                logs["entropy"].append(entropy.mean().item())
        self._n_updates += self.n_epochs
        for key, values in logs.items():
            if values:
                self.logger.record(f"train/{key}", float(np.mean(values)))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/learning_rate", self.policy.optimizer.param_groups[0]["lr"])
        spread = rollout.returns.std(axis=1)
        self.logger.record("rollout/group_return_mean", float(rollout.returns.mean()))
        self.logger.record("rollout/group_success_rate", float(rollout.successes.mean()))
        self.logger.record("rollout/groups_without_signal", float(np.mean(spread == 0)))

    def learn(
        self: SelfGRPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "GRPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfGRPO:
        """Trains until ``total_timesteps`` env steps (every row's decoder steps) are spent."""
        _check_int("total_timesteps", total_timesteps, 0)
        total_timesteps, callback = self._setup_learn(total_timesteps, callback, reset_num_timesteps,
                                                      tb_log_name, progress_bar)  # fmt: skip
        callback.on_training_start(locals(), globals())
        iteration = 0
        while self.num_timesteps < total_timesteps:
            rollout = self.collect_rollouts(callback)
            if rollout is None:
                break
            iteration += 1
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            self.train(rollout)
            if log_interval and iteration % log_interval == 0:
                self._dump_logs(iteration)
        callback.on_training_end()
        return self

    def _dump_logs(self, iteration: int) -> None:
        assert self.ep_info_buffer is not None and self.ep_success_buffer is not None
        elapsed = max((time.time_ns() - self.start_time) / 1e9, 1e-9)
        self.logger.record("time/iterations", iteration, exclude="tensorboard")
        if self.ep_info_buffer and "r" in self.ep_info_buffer[0]:
            self.logger.record("rollout/ep_rew_mean", safe_mean([info["r"] for info in self.ep_info_buffer]))
            self.logger.record("rollout/ep_len_mean", safe_mean([info["l"] for info in self.ep_info_buffer]))
        if self.ep_success_buffer:
            self.logger.record("rollout/success_rate", safe_mean(self.ep_success_buffer))
        self.logger.record("time/fps", int((self.num_timesteps - self._num_timesteps_at_start) / elapsed))
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []


class _Turns:
    """The turns of a rollout's episodes, for step-level credit: which turn each step belongs
    to, the anchor that turn started from, and the rewards of each turn."""

    def __init__(self, slots: Sequence[tuple[int, int]]) -> None:
        self.slots = slots
        self.turn_of_step: list[int] = []  # index into the turn lists below
        self.group: list[int] = []
        self.anchor: list[Hashable] = []
        self.reward: list[float] = []
        self.slot: list[int] = []
        self.shared_share = 0.0  # turns that share their anchor with another turn of their group
        self._open: dict[tuple[int, int], int] = {}  # (slot, turn number) -> turn index
        self._row: dict[int, tuple[int, Hashable]] = {}  # row -> (turn number, anchor) of its next step

    def restart(self, slots_of_rows: Sequence[int | None]) -> None:
        """Rows given a new episode start at its first turn, from the group's common start."""
        for row, slot in enumerate(slots_of_rows):
            if slot is not None:
                self._row[row] = (0, START)

    def record(self, row: int, slot: int, reward: float, info: dict[str, Any] | None) -> None:
        """A step of ``row`` (in episode ``slot``); ``info`` is ``None`` when the episode ended."""
        number, anchor = self._row[row]
        key = (slot, number)
        if key not in self._open:
            self._open[key] = len(self.group)
            self.group.append(self.slots[slot][0])
            self.anchor.append(anchor)
            self.reward.append(0.0)
            self.slot.append(slot)
        turn = self._open[key]
        self.turn_of_step.append(turn)
        self.reward[turn] += reward
        if info is not None:
            if "anchor" not in info or "turn" not in info:
                raise ValueError("step_credit compares turns that start from the same world state: the task "
                                 "must give anchor states (info['anchor'], as the household games do)")  # fmt: skip
            self._row[row] = (int(info["turn"]), info["anchor"])

    def advantages(self, gamma: float, scale: bool) -> np.ndarray:
        """``[steps]`` the turn-level advantage of each step's turn (sets :attr:`shared_share`)."""
        returns = np.zeros(len(self.group))
        by_slot: dict[int, list[int]] = {}
        for turn, slot in enumerate(self.slot):
            by_slot.setdefault(slot, []).append(turn)
        for turns in by_slot.values():
            returns[turns] = turn_returns([self.reward[t] for t in turns], gamma)
        keys = list(zip(self.group, self.anchor, strict=True))
        counts = Counter(keys)
        self.shared_share = float(np.mean([counts[key] > 1 for key in keys])) if keys else 0.0
        per_turn = anchor_advantages(self.group, self.anchor, returns, scale)
        return per_turn[np.asarray(self.turn_of_step, dtype=np.int64)].astype(np.float32)


def _merged(log_probs: torch.Tensor, aliases: torch.Tensor) -> torch.Tensor:
    """``log sum_{a in aliases} pi(a)`` per row: the log-probability of the row's token.

    Rows where every code writes the token are exactly 0 with no gradient (not a rounding-error
    gradient that Adam's normalisation would blow up into a step).
    """
    merged = torch.logsumexp(log_probs.masked_fill(~aliases, float("-inf")), dim=-1)
    return torch.where(aliases.all(-1), torch.zeros_like(merged), merged)


def _cola_vector_env(env: Any) -> Any:
    """The cola-gym vector env under ``env`` (SB3 wrappers such as ``VecMonitor`` looked through), or ``None``."""
    from cola_agents.sb3 import CoLAVecEnv

    while env is not None and not isinstance(env, CoLAVecEnv):
        env = getattr(env, "venv", None)
    return None if env is None else env.vector_env


def _check_int(name: str, value: Any, minimum: int, why: str = "") -> None:
    """Raises ``ValueError`` unless ``value`` is an integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{reason}, got {value!r}")
