"""Losses and metrics of the training stages, on a padded batch of token sequences.

Notation: ``ids [B, T]``, ``h [B, T, d]`` the decoder's final normalised states, the
action of step ``t`` (which produces ``ids[:, t + 1]``) is read by the IDM at position
``t + 1`` and chosen by the policy at position ``t``. ``targets [B, T - 1]`` and
``loss_mask [B, T - 1]`` are the next tokens and which of them count.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cola_gym.training.config import TrainConfig
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
    """

    ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    hidden: torch.Tensor | None = None
    actions: torch.Tensor | None = None
    action_positions: torch.Tensor | None = None
    action_mask: torch.Tensor | None = None
    rewards: torch.Tensor | None = None

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


class StageObjective(nn.Module):
    """Loss of one stage; only the parts that train in that stage are registered children.

    Args:
        model: the :class:`~cola_gym.model.CoLAModel` (its frozen parts are used, not owned).
        config: the stage's configuration.
    """

    def __init__(self, model: Any, config: TrainConfig) -> None:
        super().__init__()
        self.config = config
        self._model = (model,)  # a tuple, so DDP neither owns nor broadcasts the frozen parts
        if config.stage == "1a":
            self.idm, self.codebook, self.world_model = model.idm, model.codebook, model.world_model
        elif config.stage == "1b":
            self.policy = model.policy
        elif config.stage == "q":
            if model.q_network is None:
                raise ValueError("stage q needs a model with a Q-network (model.add_q_network(num_layers))")
            self.q_network = model.q_network
            self.target_network = copy.deepcopy(model.q_network).requires_grad_(False)
        else:
            self.decoder = model.decoder

    @property
    def model(self) -> Any:
        """The whole CoLA model."""
        return self._model[0]

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Training state outside the model and optimizer (the target network), for checkpoints."""
        if self.config.stage != "q":
            return {}
        return {f"target_network.{k}": v for k, v in self.target_network.state_dict().items()}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restores :meth:`extra_state`."""
        if self.config.stage == "q":
            prefix = "target_network."
            self.target_network.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )

    def before_step(self, step: int) -> None:
        """Syncs the Q-learning target network every ``target_sync_every`` steps (step 0 included)."""
        if self.config.stage == "q" and step % self.config.target_sync_every == 0:
            self.target_network.load_state_dict(self.q_network.state_dict())

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, metrics)`` of a batch."""
        hidden = batch.hidden
        if hidden is None:
            if self.config.trains_decoder:
                hidden = self.model.hidden_states(batch.ids, batch.attention_mask)
            else:
                with torch.no_grad():
                    hidden = self.model.hidden_states(batch.ids, batch.attention_mask)
        if self.config.stage == "1a":
            return self._stage_1a(batch, hidden, generator)
        if self.config.stage == "1b":
            return self._stage_1b(batch, hidden)
        if self.config.stage == "q":
            return self._stage_q(batch, hidden)
        return self._stage_2(batch, hidden)

    def _stage_1a(
        self, batch: Batch, hidden: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model, mask = self.model, batch.loss_mask.bool()
        idm_logits = model.idm_logits(hidden, batch.attention_mask)[mask]  # [N, K]
        one_hot, soft = gumbel_softmax_st(idm_logits.float(), self.config.gumbel_tau, generator)
        action_embedding = model.codebook.embed_soft(one_hot.to(idm_logits.dtype))
        logits = model.world_model_logits(hidden[:, :-1][mask], action_embedding)
        cross_entropy = mean_cross_entropy(logits, batch.targets[mask])
        negative_entropy = (soft * soft.clamp_min(1e-8).log()).sum(-1).mean()
        loss = cross_entropy + self.config.entropy_bonus * negative_entropy
        metrics = {
            "loss/world_model_ce": cross_entropy.detach(),
            "loss/idm_negative_entropy": negative_entropy.detach(),
        }
        metrics.update(code_usage_metrics(idm_logits.argmax(-1).detach(), model.num_actions))
        return loss, metrics

    def _stage_1b(self, batch: Batch, hidden: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model, mask = self.model, batch.loss_mask.bool()
        with torch.no_grad():
            labels = model.idm_logits(hidden, batch.attention_mask).argmax(-1)[mask]
        logits = model.policy_logits(hidden, batch.attention_mask)[:, :-1][mask]
        loss = mean_cross_entropy(logits, labels)
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return loss, {"loss/behaviour_cloning": loss.detach(), "acc/policy_vs_idm": accuracy.detach()}

    def _stage_q(self, batch: Batch, hidden: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Double DQN: y = r + gamma * (1 - done) * Q_target(s', argmax_a Q(s', a))."""
        assert batch.actions is not None and batch.action_positions is not None
        assert batch.action_mask is not None and batch.rewards is not None
        model = self.model
        positions = model._mask_and_positions(hidden, batch.attention_mask)[1]
        states = hidden.to(model.head_dtype)
        q_all = self.q_network(states, batch.attention_mask, positions)  # [B, T, K]
        rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None]
        where = batch.action_positions
        q_taken = q_all[rows, where].gather(-1, batch.actions[..., None]).squeeze(-1)  # [B, A]
        counts = batch.action_mask.sum(-1, keepdim=True)
        steps = torch.arange(where.shape[1], device=where.device)[None]
        done = steps == counts - 1
        next_where = torch.cat([where[:, 1:], where[:, -1:]], dim=1)  # unused where done
        with torch.no_grad():
            best_next = q_all.detach()[rows, next_where].argmax(-1, keepdim=True)
            q_target_all = self.target_network(states, batch.attention_mask, positions)
            target_next = q_target_all[rows, next_where].gather(-1, best_next).squeeze(-1)
            rewards = torch.where(done, batch.rewards[:, None], torch.zeros_like(target_next))
            targets = rewards + self.config.discount * (~done).float() * target_next
        valid = batch.action_mask
        loss = F.smooth_l1_loss(q_taken[valid].float(), targets[valid].float())
        final = q_taken[done & valid].detach()
        right = batch.rewards > 0.5
        zero = final.new_tensor(0.0)
        metrics = {
            "loss/td": loss.detach(),
            "q/mean": q_taken[valid].detach().mean(),
            "q/final_right_answers": final[right].mean() if right.any() else zero,
            "q/final_wrong_answers": final[~right].mean() if (~right).any() else zero,
        }
        return loss, metrics

    def _stage_2(self, batch: Batch, hidden: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model, mask = self.model, batch.loss_mask.bool()
        with torch.no_grad():
            if self.config.fta_actions == "idm":
                actions = model.idm_logits(hidden.detach(), batch.attention_mask).argmax(-1)
            else:
                actions = model.policy_logits(hidden.detach(), batch.attention_mask)[:, :-1].argmax(-1)
            action_embedding = model.codebook(actions[mask])
        logits = model.world_model_logits(hidden[:, :-1][mask], action_embedding)
        loss = mean_cross_entropy(logits, batch.targets[mask])
        return loss, {"loss/fta_ce": loss.detach()}


@torch.no_grad()
def evaluation_metrics(model: Any, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
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


def evaluate_examples(model: Any, examples: Sequence[TokenizedExample], batch_size: int = 8) -> dict[str, float]:
    """:func:`evaluation_metrics` over a held-out set: token-weighted means, code usage over the whole set.

    Also ``perplexity/decoder`` and ``perplexity/world_model_idm_actions``.
    """
    totals: dict[str, float] = {}
    weight = 0
    actions = []
    for first in range(0, len(examples), batch_size):
        chunk = examples[first : first + batch_size]
        batch = collate([(e.ids, None, e.response_start) for e in chunk], only_responses=False).to(model.device)
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


def collate(rows: Sequence[tuple[Any, ...]], only_responses: bool) -> Batch:
    """Right-pads ``(ids, hidden or None, response_start[, transitions])`` rows into a :class:`Batch`.

    ``only_responses`` counts only targets inside the response (stage 2's prompt masking).
    Rows with :class:`~cola_gym.training.data.Transitions` also fill the Q-learning fields.
    """
    width = max(len(row[0]) for row in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    hidden = None
    if rows[0][1] is not None:
        hidden = torch.zeros(len(rows), width, rows[0][1].shape[-1], dtype=torch.float32)
    loss_mask = torch.zeros(len(rows), width - 1, dtype=torch.bool)
    for row, (tokens, states, start, *_) in enumerate(rows):
        length = len(tokens)
        ids[row, :length] = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        attention[row, :length] = 1
        if hidden is not None and states is not None:
            hidden[row, :length] = torch.from_numpy(np.asarray(states, dtype=np.float32))
        first_target = max(start - 1, 0) if only_responses else 0
        loss_mask[row, first_target : length - 1] = True
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
