"""Losses and metrics of the training stages, on a padded batch of token sequences.

Notation: ``ids [B, T]``, ``h [B, T, d]`` the decoder's final normalised states, the
action of step ``t`` (which produces ``ids[:, t + 1]``) is read by the IDM at position
``t + 1`` and chosen by the policy at position ``t``. ``targets [B, T - 1]`` and
``loss_mask [B, T - 1]`` are the next tokens and which of them count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cola_gym.training.config import TrainConfig
from cola_gym.training.data import TokenizedExample


@dataclass
class Batch:
    """A padded batch (right padding).

    Attributes:
        ids: ``[B, T]`` token ids.
        attention_mask: ``[B, T]`` 1 for tokens.
        loss_mask: ``[B, T - 1]`` which next-token targets count.
        hidden: ``[B, T, d]`` cached decoder states, or ``None`` to run the decoder.
    """

    ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    hidden: torch.Tensor | None = None

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
        hidden = None if self.hidden is None else self.hidden.to(device)
        return Batch(self.ids.to(device), self.attention_mask.to(device), self.loss_mask.to(device), hidden)


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
        else:
            self.decoder = model.decoder

    @property
    def model(self) -> Any:
        """The whole CoLA model."""
        return self._model[0]

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


def collate(rows: Sequence[tuple[np.ndarray, np.ndarray | None, int]], only_responses: bool) -> Batch:
    """Right-pads ``(ids, hidden or None, response_start)`` rows into a :class:`Batch`.

    ``only_responses`` counts only targets inside the response (stage 2's prompt masking).
    """
    width = max(len(ids) for ids, _, _ in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    hidden = None
    if rows[0][1] is not None:
        hidden = torch.zeros(len(rows), width, rows[0][1].shape[-1], dtype=torch.float32)
    loss_mask = torch.zeros(len(rows), width - 1, dtype=torch.bool)
    for row, (tokens, states, start) in enumerate(rows):
        length = len(tokens)
        ids[row, :length] = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        attention[row, :length] = 1
        if hidden is not None and states is not None:
            hidden[row, :length] = torch.from_numpy(np.asarray(states, dtype=np.float32))
        first_target = max(start - 1, 0) if only_responses else 0
        loss_mask[row, first_target : length - 1] = True
    return Batch(ids=ids, attention_mask=attention, loss_mask=loss_mask, hidden=hidden)
