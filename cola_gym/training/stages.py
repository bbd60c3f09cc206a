"""The training stages, one object each, in one table: what trains, on what, with which loss.

=========  ===========================================  ==========  ==========================================
stage      trains                                       data        loss (metrics)
=========  ===========================================  ==========  ==========================================
``lm``     decoder + LM head (full)                     text        next-token CE of the bare decoder
``1a``     IDM + codebook + world-model merge           text        world-model CE with straight-through
                                                                    Gumbel-softmax IDM actions + entropy bonus
``1b``     policy                                       text        behaviour cloning of the IDM's argmax
``2``      decoder + LM head (full or LoRA)             text        CE under fixed actions (FTA-I / FTA-P)
``q``      Q-network                                    episodes    Double DQN TD loss
=========  ===========================================  ==========  ==========================================

Notation: ``ids [B, T]``, ``h [B, T, d]`` the decoder's final normalised states, the action of
step ``t`` (which produces ``ids[:, t + 1]``) is read by the IDM at position ``t + 1`` and
chosen by the policy at position ``t``.
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from cola_gym.model import CoLAModel
from cola_gym.training.config import TrainConfig
from cola_gym.training.objectives import (
    Batch,
    code_usage_metrics,
    gumbel_softmax_st,
    mean_cross_entropy,
    pairwise_ranking_loss,
)

Metrics = dict[str, torch.Tensor]


class StageObjective(nn.Module):
    """A stage's loss; only the parts that train in that stage are registered children.

    Subclasses declare :attr:`name`, :attr:`data` and :attr:`metrics`, and implement
    :meth:`trainable_parts` and :meth:`loss`.

    Args:
        model: the CoLA model (its frozen parts are used, not owned).
        config: the stage's configuration.
    """

    name: ClassVar[str]
    data: ClassVar[Literal["text", "episodes"]] = "text"
    metrics: ClassVar[tuple[str, ...]]

    def __init__(self, model: CoLAModel, config: TrainConfig) -> None:
        super().__init__()
        self.config = config
        self._model = (model,)  # a tuple, so DDP neither owns nor broadcasts the frozen parts
        for name, part in self.trainable_parts(model).items():
            setattr(self, name, part)

    @classmethod
    def trainable_parts(cls, model: CoLAModel) -> dict[str, nn.Module]:
        """The parts of ``model`` this stage trains, by name."""
        raise NotImplementedError

    @classmethod
    def prepare(cls, model: CoLAModel, config: TrainConfig) -> None:
        """Freezes ``model`` except the parts this stage trains (stage 2 may add LoRA adapters first)."""
        model.requires_grad_(False)
        parts = cls.trainable_parts(model)
        if "decoder" in parts:
            _refuse_quantized_weights(model, cls.name)
        for part in parts.values():
            part.requires_grad_(True)

    @property
    def model(self) -> CoLAModel:
        """The whole CoLA model."""
        return self._model[0]

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        """``(loss, metrics)`` of a batch."""
        hidden = batch.hidden
        if hidden is None:
            with torch.set_grad_enabled(self.config.trains_decoder and torch.is_grad_enabled()):
                hidden = self.model.hidden_states(batch.ids, batch.attention_mask)
        return self.loss(batch, hidden, generator)

    def loss(self, batch: Batch, hidden: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        """The stage's loss and metrics given the decoder states ``hidden [B, T, d]``."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Training state outside the model and optimizer, for checkpoints (none by default)."""
        return {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restores :meth:`extra_state`."""

    def before_step(self, step: int) -> None:
        """Called before optimizer step ``step``."""

    def after_step(self, step: int) -> Metrics:
        """Called after optimizer step ``step`` (parameters may change here); returns metrics to log."""
        return {}


class LatentActionStage(StageObjective):
    """Stage 1a: the latent action space (IDM, codebook, world-model merge; decoder frozen).

    Two options fight codebook collapse (most codes never chosen, so an agent's K actions
    do the same few things): ``code_usage_weight`` adds ``w * (log K - H(mean p) + mean H(p))``,
    minimised when every code is used across a batch and each choice is sharp (the
    mutual-information objective of Hu et al. 2017 and IIC, Ji et al. 2019); and
    ``dead_code_steps`` restarts codes the IDM has not chosen for that many steps, in the
    spirit of the random restarts of Jukebox (Dhariwal et al. 2020, section 2.3) and SoundStream
    (Zeghidour et al. 2021): the dead code's IDM read-out row is set so that the code wins at
    the batch's worst-predicted tokens, and its action embedding starts as a copy of the code
    the IDM chose there, so the world model's prediction is unchanged at the moment of restart.
    """

    name = "1a"
    metrics = (
        "loss/world_model_ce",
        "loss/idm_negative_entropy",
        "loss/code_usage",
        "codes/alive",
        "codes/top_share",
        "codes/perplexity",
        "codes/alive_recently",
        "codes/restarts",
    )
    code_last_used: torch.Tensor
    code_restarts: torch.Tensor

    def __init__(self, model: CoLAModel, config: TrainConfig) -> None:
        super().__init__(model, config)
        self.register_buffer("code_last_used", torch.zeros(model.num_actions, dtype=torch.long), persistent=False)
        self.register_buffer("code_restarts", torch.zeros((), dtype=torch.long), persistent=False)
        self._step = 0
        self._pending: tuple[torch.Tensor, ...] | None = None

    @classmethod
    def trainable_parts(cls, model: CoLAModel) -> dict[str, nn.Module]:
        return {"idm": model.idm, "codebook": model.codebook, "world_model": model.world_model}

    def before_step(self, step: int) -> None:
        self._step = step

    def after_step(self, step: int) -> Metrics:
        """Restarts dead codes (after the optimizer step: weights change outside autograd)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return {}
        restarts = self._restart_dead_codes(*pending)
        if torch.distributed.is_available() and torch.distributed.is_initialized():  # every rank: rank 0's restarts
            for tensor in (self.model.idm.out.weight, self.model.codebook.proj.weight, self.code_last_used):
                torch.distributed.broadcast(tensor.data, src=0)
        self.code_restarts += restarts
        recent = (step - self.code_last_used) < self.config.dead_code_steps
        return {"codes/restarts": self.code_restarts.float(), "codes/alive_recently": recent.sum().float()}

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {"code_last_used": self.code_last_used, "code_restarts": self.code_restarts}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        for name in ("code_last_used", "code_restarts"):
            if name in tensors:
                getattr(self, name).copy_(tensors[name])

    def loss(self, batch: Batch, hidden: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        model, mask = self.model, batch.loss_mask.bool()
        attention, positions = model.mask_and_positions(hidden, batch.attention_mask)
        features = model.idm.trunk(hidden.to(model.head_dtype), attention, positions)[:, 1:][mask]  # [N, H]
        idm_logits = model.idm.out(features)  # [N, K], the same as model.idm_logits(...)[mask]
        one_hot, soft = gumbel_softmax_st(idm_logits.float(), self.config.gumbel_tau, generator)
        action_embedding = model.codebook.embed_soft(one_hot.to(idm_logits.dtype))
        logits = model.world_model_logits(hidden[:, :-1][mask], action_embedding)
        targets = batch.targets[mask]
        token_ce = F.cross_entropy(logits.float(), targets, reduction="none")
        cross_entropy = token_ce.sum() / max(targets.numel(), 1)
        negative_entropy = (soft * soft.clamp_min(1e-8).log()).sum(-1).mean()
        loss = cross_entropy + self.config.entropy_bonus * negative_entropy
        metrics = {
            "loss/world_model_ce": cross_entropy.detach(),
            "loss/idm_negative_entropy": negative_entropy.detach(),
        }
        if self.config.code_usage_weight and len(targets):
            usage = code_usage_loss(idm_logits.float())
            loss = loss + self.config.code_usage_weight * usage
            metrics["loss/code_usage"] = usage.detach()
        chosen = idm_logits.argmax(-1).detach()
        metrics.update(code_usage_metrics(chosen, model.num_actions))
        if self.config.dead_code_steps and len(targets) and torch.is_grad_enabled():
            self._pending = (features.detach(), idm_logits.detach(), token_ce.detach(), chosen)
        return loss, metrics

    @torch.no_grad()
    def _restart_dead_codes(
        self, features: torch.Tensor, logits: torch.Tensor, token_ce: torch.Tensor, chosen: torch.Tensor
    ) -> int:
        """Restarts codes unused for ``dead_code_steps`` at the worst-predicted tokens; returns how many."""
        self.code_last_used[chosen.unique()] = self._step
        dead = torch.nonzero(self._step - self.code_last_used >= self.config.dead_code_steps).flatten()
        worst = token_ce.argsort(descending=True)[: len(dead)]
        read_out, embeddings = self.model.idm.out.weight, self.model.codebook.proj.weight  # [K, H], [d, K]
        for code, row in zip(dead.tolist(), worst.tolist(), strict=False):
            feature = features[row].to(read_out.dtype)
            target = logits[row].max().to(read_out.dtype) + 1.0  # the restarted code wins here by a margin
            read_out[code] = feature * target / feature.dot(feature).clamp_min(1e-6)
            embeddings[:, code] = embeddings[:, int(chosen[row])]
            self.code_last_used[code] = self._step
        return min(len(dead), len(worst))


def code_usage_loss(logits: torch.Tensor) -> torch.Tensor:
    """``log K - H(mean p) + mean H(p)`` of IDM logits ``[N, K]``: 0 when usage is uniform and choices one-hot.

    >>> round(float(code_usage_loss(torch.tensor([[9.0, -9.0], [-9.0, 9.0]]))), 4)  # both codes, sharp
    0.0
    >>> round(float(code_usage_loss(torch.tensor([[9.0, -9.0], [9.0, -9.0]]))), 3)  # collapsed on one code
    0.693
    """
    probs = torch.softmax(logits, -1)
    mean = probs.mean(0)
    usage_entropy = -(mean * mean.clamp_min(1e-12).log()).sum()
    token_entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
    return math.log(logits.shape[-1]) - usage_entropy + token_entropy


class BehaviourCloningStage(StageObjective):
    """Stage 1b: the policy clones the IDM's argmax actions."""

    name = "1b"
    metrics = ("loss/behaviour_cloning", "acc/policy_vs_idm")

    @classmethod
    def trainable_parts(cls, model: CoLAModel) -> dict[str, nn.Module]:
        return {"policy": model.policy}

    def loss(self, batch: Batch, hidden: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        model, mask = self.model, batch.loss_mask.bool()
        with torch.no_grad():
            labels = model.idm_logits(hidden, batch.attention_mask).argmax(-1)[mask]
        logits = model.policy_logits(hidden, batch.attention_mask)[:, :-1][mask]
        loss = mean_cross_entropy(logits, labels)
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return loss, {"loss/behaviour_cloning": loss.detach(), "acc/policy_vs_idm": accuracy.detach()}


def _quantized_bits(model: CoLAModel) -> int | None:
    """4 or 8 for a bitsandbytes-quantized decoder, else ``None``."""
    decoder = model.decoder
    if getattr(decoder, "is_loaded_in_4bit", False):
        return 4
    return 8 if getattr(decoder, "is_loaded_in_8bit", False) else None


def _refuse_quantized_weights(model: CoLAModel, stage: str) -> None:
    bits = _quantized_bits(model)
    if bits is not None:
        raise ValueError(
            f"stage {stage} trains the decoder's weights, and this decoder is quantized to {bits} bits "
            "(its weights cannot take gradients): train LoRA adapters over it (stage 2 with --lora-rank > 0), "
            "or load the decoder unquantized (--quantization none)"
        )


class FineTuningStage(StageObjective):
    """Stage 2: fine-tuning under action guidance (decoder + LM head, fully or through LoRA)."""

    name = "2"
    metrics = ("loss/fta_ce",)

    @classmethod
    def trainable_parts(cls, model: CoLAModel) -> dict[str, nn.Module]:
        return {"decoder": model.decoder}

    @classmethod
    def prepare(cls, model: CoLAModel, config: TrainConfig) -> None:
        model.requires_grad_(False)
        if not config.lora_rank:
            _refuse_quantized_weights(model, cls.name)
            model.decoder.requires_grad_(True)
            return
        if not hasattr(model.decoder, "peft_config"):
            from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

            if _quantized_bits(model) is not None:  # QLoRA: norms and LM head in fp32, inputs that carry gradients
                model.decoder = prepare_model_for_kbit_training(model.decoder, use_gradient_checkpointing=False)

            targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
            lora = LoraConfig(r=config.lora_rank, lora_alpha=int(config.lora_alpha), target_modules=targets)
            with torch.random.fork_rng(devices=[]):  # peft draws its init from the global RNG
                torch.manual_seed(config.seed)
                model.decoder = get_peft_model(model.decoder, lora)
        for name, param in model.decoder.named_parameters():
            param.requires_grad_("lora_" in name)

    def loss(self, batch: Batch, hidden: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
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


class LanguageModelStage(StageObjective):
    """Stage lm: the decoder as a plain language model (a micro decoder's training from scratch)."""

    name = "lm"
    metrics = ("loss/lm_ce",)

    @classmethod
    def trainable_parts(cls, model: CoLAModel) -> dict[str, nn.Module]:
        return {"decoder": model.decoder}

    def loss(self, batch: Batch, hidden: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        mask = batch.loss_mask.bool()
        logits = self.model.decoder_logits(hidden[:, :-1][mask])
        loss = mean_cross_entropy(logits, batch.targets[mask])
        return loss, {"loss/lm_ce": loss.detach()}


class QLearningStage(StageObjective):
    """Stage q: the Q-network tree search uses, by Double DQN on logged episodes.

    y = r + gamma * (1 - done) * Q_target(s', argmax_a Q(s', a)); terminal 1/0 rewards. With
    ``q_targets="monte_carlo"``: y = gamma ** (steps left) * R, the episode's own outcome. With
    ``q_ranking_weight``, plus that weight times :func:`pairwise_ranking_loss` of the episodes'
    mean Q within each prompt of the batch.
    """

    name = "q"
    data = "episodes"
    q_network: nn.Module
    metrics = ("loss/td", "loss/ranking", "q/mean", "q/final_right_answers", "q/final_wrong_answers")

    def __init__(self, model: CoLAModel, config: TrainConfig) -> None:
        super().__init__(model, config)
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)

    @classmethod
    def trainable_parts(cls, model: CoLAModel) -> dict[str, nn.Module]:
        if model.q_network is None:
            raise ValueError("stage q needs a model with a Q-network: model.add_q_network(num_layers)")
        return {"q_network": model.q_network}

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {f"target_network.{k}": v for k, v in self.target_network.state_dict().items()}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        prefix = "target_network."
        self.target_network.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})

    def before_step(self, step: int) -> None:
        """Syncs the target network every ``target_sync_every`` steps (step 0 included)."""
        if step % self.config.target_sync_every == 0:
            self.target_network.load_state_dict(self.q_network.state_dict())

    def loss(self, batch: Batch, hidden: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        assert batch.actions is not None and batch.action_positions is not None
        assert batch.action_mask is not None and batch.rewards is not None
        model = self.model
        positions = model.mask_and_positions(hidden, batch.attention_mask)[1]
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
            if self.config.q_targets == "monte_carlo":
                steps_left = (counts - 1 - steps).clamp(min=0).float()
                targets = batch.rewards[:, None] * self.config.discount**steps_left
            else:
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
        if self.config.q_ranking_weight:
            if batch.groups is None:
                raise ValueError("q_ranking_weight needs batches that name each episode's prompt (batch.groups)")
            path_mean = (q_taken * valid).sum(-1) / counts.squeeze(-1).clamp_min(1)
            ranking, pairs = pairwise_ranking_loss(path_mean, batch.rewards, batch.groups)
            loss = loss + self.config.q_ranking_weight * ranking
            metrics["loss/ranking"] = ranking.detach()
            metrics["q/ranking_pairs"] = zero + pairs
        return loss, metrics


STAGE_OBJECTIVES: dict[str, type[StageObjective]] = {
    stage.name: stage
    for stage in (LanguageModelStage, LatentActionStage, BehaviourCloningStage, FineTuningStage, QLearningStage)
}
"""Every stage, by its name in :class:`~cola_gym.training.config.TrainConfig`."""


def stage_objective(model: CoLAModel, config: TrainConfig) -> StageObjective:
    """The objective of ``config.stage`` on ``model``."""
    return STAGE_OBJECTIVES[config.stage](model, config)
