"""Batches, shared loss pieces and held-out metrics of the training stages.

Notation: ``ids [B, T]``, ``h [B, T, d]`` the decoder's final normalised states, the
action of step ``t`` (which produces ``ids[:, t + 1]``) is read by the IDM at position
``t + 1`` and chosen by the policy at position ``t``. ``targets [B, T - 1]`` and
``loss_mask [B, T - 1]`` are the next tokens and which of them count.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cola_gym.model import CoLAModel
from cola_gym.training.data import TokenizedExample, Transitions


@dataclass
class Batch:
    """A padded batch (right padding).

    Attributes:
        ids: ``[B, T]`` token ids.
        attention_mask: ``[B, T]`` 1 for tokens.
        loss_mask: ``[B, T - 1]`` which next-token targets count.
        hidden: ``[B, T, d]`` cached decoder states, or ``None`` to run the decoder.
        actions: ``[B, A]`` logged latent actions (Q-learning), or ``None``.
        action_positions: ``[B, A]`` the position of each action's state in ``ids``.
        action_mask: ``[B, A]`` which actions exist (episodes differ in length).
        rewards: ``[B]`` each episode's terminal reward.
        groups: ``[B]`` which prompt each episode answers (rows with equal ids share a prompt),
            or ``None`` when batches do not keep prompts together.
    """

    ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    hidden: torch.Tensor | None = None
    actions: torch.Tensor | None = None
    action_positions: torch.Tensor | None = None
    action_mask: torch.Tensor | None = None
    rewards: torch.Tensor | None = None
    groups: torch.Tensor | None = None

    @property
    def targets(self) -> torch.Tensor:
        """``[B, T - 1]`` next tokens."""
        return self.ids[:, 1:]

    @property
    def num_targets(self) -> int:
        """Tokens that count in the loss."""
        return int(self.loss_mask.sum())

    def to(self, device: torch.device) -> Batch:
        """The batch on ``device``."""
        return dataclasses.replace(
            self, **{k: v.to(device) for k, v in self.__dict__.items() if isinstance(v, torch.Tensor)}
        )


def gumbel_softmax_st(
    logits: torch.Tensor, tau: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through Gumbel-softmax with explicit randomness.

    Returns:
        ``(one_hot_st, soft)``: hard one-hots whose gradient is the soft sample's, and the
        soft sample ``softmax((logits + g) / tau)`` itself.
    """
    uniform = torch.rand(logits.shape, generator=generator, dtype=torch.float32).to(logits.device, logits.dtype)
    exponential = -torch.log(uniform.clamp_min(1e-20))
    gumbel = -torch.log(exponential.clamp_min(1e-20))
    soft = torch.softmax((logits + gumbel) / tau, dim=-1)
    hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft, soft


def mean_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy that is 0 (not NaN) for an empty batch of targets."""
    return F.cross_entropy(logits.float(), targets, reduction="sum") / max(targets.numel(), 1)


RANKING_SCALE = 10.0
"""Logit per unit of Q in :func:`pairwise_ranking_loss`: a right answer 0.1 above a wrong one of
the same prompt costs log(1 + e^-1) = 0.31, 0.3 above it 0.05."""


def pairwise_ranking_loss(
    scores: torch.Tensor, rewards: torch.Tensor, groups: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """RankNet's loss over the pairs of one prompt's episodes with different outcomes.

    Args:
        scores: ``[B]`` each episode's score (its mean Q).
        rewards: ``[B]`` terminal rewards (right: > 0.5).
        groups: ``[B]`` prompt of each episode; only episodes of the same prompt are compared.

    Returns:
        ``(loss, pairs)``: the mean of ``softplus(-RANKING_SCALE * (s_right - s_wrong))`` over the
        ``pairs`` (right, wrong) pairs of a prompt; 0 (with a gradient path) when there are none.

    >>> loss, pairs = pairwise_ranking_loss(torch.tensor([0.9, 0.1, 0.5]), torch.tensor([1.0, 0.0, 0.0]),
    ...                                     torch.tensor([0, 0, 1]))
    >>> pairs, round(float(loss), 4)
    (1, 0.0003)
    """
    right = rewards > 0.5
    pairs = (groups[:, None] == groups[None, :]) & right[:, None] & ~right[None, :]
    count = int(pairs.sum())
    if count == 0:
        return scores.sum() * 0.0, 0
    margins = scores[:, None] - scores[None, :]
    return F.softplus(-RANKING_SCALE * margins[pairs].float()).mean(), count


def code_usage_metrics(actions: torch.Tensor, num_actions: int) -> dict[str, torch.Tensor]:
    """Codes alive, top-code share and code perplexity of a flat tensor of actions.

    >>> m = code_usage_metrics(torch.tensor([0, 0, 1, 3]), 4)
    >>> int(m["codes/alive"]), float(m["codes/top_share"]), round(float(m["codes/perplexity"]), 3)
    (3, 0.5, 2.828)
    """
    counts = torch.bincount(actions.flatten(), minlength=num_actions).float()
    usage = counts / counts.sum().clamp_min(1.0)
    entropy = -(usage * usage.clamp_min(1e-12).log()).sum()
    return {
        "codes/alive": (counts > 0).sum().float(),
        "codes/top_share": usage.max(),
        "codes/perplexity": entropy.exp(),
    }


@torch.no_grad()
def evaluation_metrics(model: CoLAModel, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Token accuracies of the world model (IDM and greedy-policy actions) and of the bare decoder.

    Returns:
        ``(metrics, idm_actions)``: metrics also hold the policy's agreement with the IDM and
        the batch's code usage; ``idm_actions [N]`` are the IDM's argmax codes of the counted
        targets (to measure code usage over a whole evaluation set).
    """
    hidden = batch.hidden if batch.hidden is not None else model.hidden_states(batch.ids, batch.attention_mask)
    mask = batch.loss_mask.bool()
    targets = batch.targets[mask]
    states = hidden[:, :-1][mask]
    idm_actions = model.idm_logits(hidden, batch.attention_mask).argmax(-1)[mask]
    policy_actions = model.policy_logits(hidden, batch.attention_mask)[:, :-1].argmax(-1)[mask]
    metrics = {}
    for name, actions in (("idm", idm_actions), ("policy", policy_actions)):
        logits = model.world_model_logits(states, model.codebook(actions))
        metrics[f"acc/world_model_{name}_actions"] = (logits.argmax(-1) == targets).float().mean()
        if name == "idm":
            metrics["loss/world_model_ce_idm_actions"] = F.cross_entropy(logits.float(), targets)
    decoder_logits = model.decoder_logits(states)
    metrics["acc/decoder"] = (decoder_logits.argmax(-1) == targets).float().mean()
    metrics["loss/decoder_ce"] = F.cross_entropy(decoder_logits.float(), targets)
    metrics["acc/policy_vs_idm"] = (policy_actions == idm_actions).float().mean()
    metrics.update(code_usage_metrics(idm_actions, model.num_actions))
    return metrics, idm_actions


def evaluate_examples(
    model: CoLAModel, examples: Sequence[TokenizedExample], batch_size: int = 8, only_responses: bool = False
) -> dict[str, float]:
    """:func:`evaluation_metrics` over a held-out set: token-weighted means, code usage over the whole set.

    Also ``perplexity/decoder`` and ``perplexity/world_model_idm_actions``. ``only_responses``
    measures the responses of chat examples only.
    """
    totals: dict[str, float] = {}
    weight = 0
    actions = []
    for first in range(0, len(examples), batch_size):
        chunk = examples[first : first + batch_size]
        batch = collate([(e.ids, None, e.response_spans) for e in chunk], only_responses).to(model.device)
        metrics, batch_actions = evaluation_metrics(model, batch)
        for key, value in metrics.items():
            if not key.startswith("codes/"):
                totals[key] = totals.get(key, 0.0) + float(value) * batch.num_targets
        actions.append(batch_actions.cpu())
        weight += batch.num_targets
    result = {key: value / max(weight, 1) for key, value in totals.items()}
    result.update(
        {key: float(value) for key, value in code_usage_metrics(torch.cat(actions), model.num_actions).items()}
    )
    result["perplexity/decoder"] = math.exp(result["loss/decoder_ce"])
    result["perplexity/world_model_idm_actions"] = math.exp(result["loss/world_model_ce_idm_actions"])
    return result


def ranking_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """The probability that a random positive scores above a random negative (ties count
    half): the area under the ROC curve. ``nan`` when either class is empty."""
    from scipy.stats import rankdata

    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = rankdata(scores)  # average ranks: a tie between classes counts half
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


@torch.no_grad()
def q_ranking_metrics(model: CoLAModel, episodes: Sequence[TokenizedExample], batch_size: int = 8) -> dict[str, float]:
    """How well the Q-network ranks held-out logged episodes by their final reward.

    For each episode, Q of the action it took at its first step, at its middle step and at its
    last step, against whether it was rewarded (reward > 0.5): ``q/auc_first_step``,
    ``q/auc_mid_episode``, ``q/auc_last_step`` (:func:`ranking_auc`; 0.5 ranks nothing, 1 ranks
    every right episode above every wrong one; ``nan`` if all episodes share an outcome),
    ``q/episodes`` and ``q/success_rate``. Tree search reads Q before an answer is finished, so
    the first two are what matter; the last is a sanity check. Best-of-N ranks one problem's own
    answers: ``q/auc_within_problem`` is the mean, over the prompts whose episodes have both
    outcomes, of the last step's AUC among that prompt's episodes (``q/problems_within`` of them;
    ``nan`` when none has both); ``q/auc_within_problem_path_mean`` ranks them by the mean Q over
    all their steps instead (how MCTS-Q and best-of-N score answers with ``leaf_q="path_mean"``).
    What best-of-N by Q would answer: ``q/top_answer_right`` is the share of prompts whose
    highest-scored episode (path mean) is right, of the prompts with at least one right episode
    (``q/prompts_with_a_right_answer``, the share of all prompts: the ceiling a verifier can reach).
    """
    if model.q_network is None:
        raise ValueError("the model has no Q-network to rank episodes with (cola-gym train --stage q)")
    where: dict[str, list[float]] = {"first_step": [], "mid_episode": [], "last_step": []}
    path_means: list[float] = []
    rewards: list[float] = []
    by_prompt: dict[bytes, list[int]] = {}
    for number, example in enumerate(episodes):
        by_prompt.setdefault(np.asarray(example.ids[: example.response_start]).tobytes(), []).append(number)
    for first in range(0, len(episodes), batch_size):
        chunk = episodes[first : first + batch_size]
        batch = collate([(e.ids, None, e.response_spans, e.transitions) for e in chunk], False).to(model.device)
        assert batch.actions is not None and batch.action_positions is not None and batch.rewards is not None
        hidden = model.hidden_states(batch.ids, batch.attention_mask)
        positions = model.mask_and_positions(hidden, batch.attention_mask)[1]
        q_all = model.q_network(hidden.to(model.head_dtype), batch.attention_mask, positions)  # [B, T, K]
        rows = torch.arange(len(chunk), device=q_all.device)
        for row, example in enumerate(chunk):
            assert example.transitions is not None
            count = len(example.transitions.actions)
            for name, step in (("first_step", 0), ("mid_episode", count // 2), ("last_step", count - 1)):
                position, action = batch.action_positions[row, step], batch.actions[row, step]
                where[name].append(float(q_all[rows[row], position, action]))
            taken = q_all[row, batch.action_positions[row, :count], batch.actions[row, :count]]
            path_means.append(float(taken.mean()))
        rewards += [float(r) for r in batch.rewards]
    right = np.asarray(rewards) > 0.5
    metrics = {f"q/auc_{name}": ranking_auc(values, right) for name, values in where.items()}
    last = np.asarray(where["last_step"])
    groups = [np.asarray(rows) for rows in by_prompt.values()]
    for name, scores in (("q/auc_within_problem", last), ("q/auc_within_problem_path_mean", np.asarray(path_means))):
        within = [ranking_auc(scores[rows], right[rows]) for rows in groups]
        mixed = [auc for auc in within if not math.isnan(auc)]
        metrics[name] = float(np.mean(mixed)) if mixed else math.nan
    metrics["q/problems_within"] = float(len(mixed))
    metrics["q/top_answer_right"] = top_answer_rate(np.asarray(path_means), right, groups)
    solvable = [right[rows].any() for rows in groups]
    metrics["q/prompts_with_a_right_answer"] = float(np.mean(solvable)) if solvable else math.nan
    metrics["q/episodes"] = float(len(rewards))
    metrics["q/success_rate"] = float(right.mean()) if len(right) else math.nan
    return metrics


def top_answer_rate(scores: np.ndarray, right: np.ndarray, groups: Sequence[np.ndarray]) -> float:
    """Of the ``groups`` (index arrays, one per prompt) holding a right answer, the share whose
    top-scored answer is right (the first of equal scores); ``nan`` if none holds one."""
    solvable = [rows for rows in groups if right[rows].any()]
    if not solvable:
        return math.nan
    return float(np.mean([right[rows[int(np.argmax(scores[rows]))]] for rows in solvable]))


def collate(rows: Sequence[tuple[Any, ...]], only_responses: bool) -> Batch:
    """Right-pads ``(ids, hidden or None, response spans[, transitions])`` rows into a :class:`Batch`.

    ``only_responses`` counts only targets inside the responses (stage 2's prompt masking);
    a row's responses are ``(start, end)`` spans of its ids
    (:attr:`~cola_gym.training.data.TokenizedExample.response_spans`).
    Rows with :class:`~cola_gym.training.data.Transitions` also fill the Q-learning fields.
    """
    width = max(len(row[0]) for row in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    hidden = None
    if rows[0][1] is not None:
        hidden = torch.zeros(len(rows), width, rows[0][1].shape[-1], dtype=torch.float32)
    loss_mask = torch.zeros(len(rows), width - 1, dtype=torch.bool)
    for row, (tokens, states, spans, *_) in enumerate(rows):
        length = len(tokens)
        ids[row, :length] = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        attention[row, :length] = 1
        if hidden is not None and states is not None:
            hidden[row, :length] = torch.from_numpy(np.asarray(states, dtype=np.float32))
        if not only_responses:
            loss_mask[row, : length - 1] = True
        for start, end in spans:  # target t sits at position t - 1
            loss_mask[row, max(start - 1, 0) : min(end, length) - 1] = True
    batch = Batch(ids=ids, attention_mask=attention, loss_mask=loss_mask, hidden=hidden)
    found = [row[3] for row in rows if len(row) > 3 and row[3] is not None]
    if len(found) == len(rows):
        transitions: list[Transitions] = found
        steps = max(len(t.actions) for t in transitions)
        batch.actions = torch.zeros(len(rows), steps, dtype=torch.long)
        batch.action_positions = torch.zeros(len(rows), steps, dtype=torch.long)
        batch.action_mask = torch.zeros(len(rows), steps, dtype=torch.bool)
        batch.rewards = torch.tensor([t.reward for t in transitions], dtype=torch.float32)
        for row, t in enumerate(transitions):
            count = len(t.actions)
            batch.actions[row, :count] = torch.from_numpy(np.asarray(t.actions, dtype=np.int64))
            batch.action_positions[row, :count] = torch.from_numpy(np.asarray(t.positions, dtype=np.int64))
            batch.action_mask[row, :count] = True
    return batch
