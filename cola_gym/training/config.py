"""Configuration of one training stage."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

Stage = Literal["lm", "1a", "1b", "2", "q"]
STAGES: tuple[Stage, ...] = ("lm", "1a", "1b", "2", "q")
Schedule = Literal["cosine", "linear", "constant"]

# Learning rates of the authors' release: stage 1 cosine 1e-4 -> 4e-5; stage 2 5e-6.
# Stage lm (training a small decoder from scratch) uses a from-scratch language-model rate.
_DEFAULT_LR = {"lm": 1e-3, "1a": 1e-4, "1b": 1e-4, "2": 5e-6, "q": 1e-4}
_DEFAULT_MIN_LR = {"lm": 1e-4, "1a": 4e-5, "1b": 4e-5, "2": 5e-7, "q": 1e-5}


@dataclass(frozen=True)
class TrainConfig:
    """One stage of CoLA training (Jia et al., ICML 2025, and the authors' release).

    - ``"lm"``: plain next-token training of the decoder and its LM head, fully, on
      responses (prompt masked); how a micro decoder is trained from scratch before the
      CoLA stages (not part of the paper, which starts from a pretrained LLM).
    - ``"1a"``: inverse dynamics model + codebook + world-model merge, decoder frozen;
      straight-through Gumbel-softmax on the IDM logits (``gumbel_tau``) with an entropy
      bonus (``entropy_bonus``), next-token cross-entropy of the world model.
    - ``"1b"``: behaviour cloning of the policy on the IDM's argmax actions.
    - ``"2"``: fine-tuning under action guidance: actions fixed from the IDM (``"idm"``,
      FTA-I) or the greedy policy (``"policy"``, FTA-P); the decoder and LM head train
      (fully, or through LoRA adapters with ``lora_rank > 0``) on responses, prompt masked.
    - ``"q"``: the Q-network tree search uses, by Double DQN on logged episodes
      (terminal 1/0 rewards, ``discount``, target network synced every
      ``target_sync_every`` steps); decoder and other heads frozen.

    Attributes:
        stage: ``"lm"``, ``"1a"``, ``"1b"``, ``"2"`` or ``"q"`` (see :mod:`cola_gym.training.stages`).
        steps: optimizer steps.
        batch_size: sequences per step and process.
        seq_len: tokens per sequence (longer examples are cut).
        learning_rate: peak learning rate (stage default when ``None``).
        min_learning_rate: final learning rate of the cosine/linear schedule.
        schedule: ``"cosine"``, ``"linear"`` or ``"constant"`` after warm-up.
        warmup_steps: linear warm-up steps.
        weight_decay: AdamW weight decay.
        grad_clip: gradient-norm clip (0 disables).
        gumbel_tau: Gumbel-softmax temperature (stage 1a).
        entropy_bonus: weight of the per-position entropy bonus (stage 1a).
        code_usage_weight: stage 1a: weight of a term against codebook collapse that
            maximises the mutual information between codes and positions, H(mean_t p_t) -
            mean_t H(p_t) over a batch of IDM distributions p_t: every code used across the
            batch, each choice sharp (0 disables).
        dead_code_steps: stage 1a: a code the IDM has not chosen for this many steps is
            restarted at the IDM features of the batch's worst-predicted token (0 disables).
        fta_actions: where stage 2 takes its actions: ``"idm"`` or ``"policy"``.
        lora_rank: 0 for full fine-tuning in stage 2, else the LoRA rank.
        lora_alpha: LoRA scaling numerator.
        use_hidden_cache: stages 1a/1b read the frozen decoder's states from a
            memory-mapped cache built once, instead of running the decoder every step.
        responses_only: stages 1a/1b: only the targets inside a chat's response count
            (cloning a task's demonstrations rather than its prompts); stage 2 always does.
        whole_chats: fold a multi-turn task's per-turn examples into one example per chat
            whose every assistant turn is a response
            (:func:`~cola_gym.training.data.merge_chat_turns`): the same targets in one pass
            over the transcript instead of one per turn (household games: ~9x fewer tokens).
        discount: gamma of the Q-learning targets (stage q).
        target_sync_every: steps between target-network syncs (stage q).
        q_targets: what stage q regresses Q(s_t, a_t) on: ``"double_dqn"`` (bootstrapped from the
            target network's value of the next step) or ``"monte_carlo"`` (the episode's own
            discounted reward, ``discount ** (steps left) * reward``: no bootstrap, so no
            overestimation of actions the logged policy seldom took).
        q_ranking_weight: stage q: weight of a pairwise loss that orders each prompt's rewarded
            episodes above its unrewarded ones by their mean Q over their actions (how a search
            and its sampling baseline score one problem's answers with ``leaf_q="path_mean"``);
            batches then hold each prompt's episodes together. Regression alone learns which
            problems are hard more than which of one problem's answers is right (0 disables).
        seed: seed of data order, Gumbel noise and head initialisation.
        log_every: steps between logged (and printed) metrics.
        eval_every: steps between held-out evaluations (0: only at the end).
        checkpoint_every: steps between checkpoints.
        keep_checkpoints: checkpoints kept on disk (oldest deleted first).
    """

    stage: Stage
    steps: int = 1000
    batch_size: int = 8
    seq_len: int = 512
    learning_rate: float | None = None
    min_learning_rate: float | None = None
    schedule: Schedule = "cosine"
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    gumbel_tau: float = 2.0
    entropy_bonus: float = 0.001
    code_usage_weight: float = 0.1
    dead_code_steps: int = 50
    fta_actions: Literal["idm", "policy"] = "idm"
    lora_rank: int = 0
    lora_alpha: int = 16
    use_hidden_cache: bool = True
    responses_only: bool = False
    whole_chats: bool = False
    discount: float = 0.99
    target_sync_every: int = 50
    q_targets: Literal["double_dqn", "monte_carlo"] = "double_dqn"
    q_ranking_weight: float = 0.0
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0
    checkpoint_every: int = 200
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        for name in ("steps", "batch_size", "seq_len", "log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "lora_rank", "dead_code_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise ValueError(f"seq_len must be >= 2 (a token and its successor), got {self.seq_len}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"schedule must be 'cosine', 'linear' or 'constant', got {self.schedule!r}")
        if self.code_usage_weight < 0:
            raise ValueError(f"code_usage_weight must be >= 0 (0 disables it), got {self.code_usage_weight}")
        if self.gumbel_tau <= 0:
            raise ValueError(f"gumbel_tau must be > 0, got {self.gumbel_tau}")
        if self.fta_actions not in ("idm", "policy"):
            raise ValueError(f"fta_actions must be 'idm' (FTA-I) or 'policy' (FTA-P), got {self.fta_actions!r}")
        if self.lora_rank and self.stage != "2":
            raise ValueError("lora_rank applies to stage 2 only (stages 1a/1b train the heads, not the decoder)")
        if self.q_targets not in ("double_dqn", "monte_carlo"):
            raise ValueError(f"q_targets must be 'double_dqn' or 'monte_carlo', got {self.q_targets!r}")
        if self.q_ranking_weight < 0:
            raise ValueError(f"q_ranking_weight must be >= 0 (0 disables it), got {self.q_ranking_weight}")
        if self.q_ranking_weight and self.stage != "q":
            raise ValueError("q_ranking_weight applies to stage q only (it ranks logged episodes by their Q)")
        if not 0.0 <= self.discount <= 1.0 or self.target_sync_every < 1:
            raise ValueError("discount must be in [0, 1] and target_sync_every >= 1")
        if self.peak_learning_rate <= 0 or self.final_learning_rate < 0:
            raise ValueError("learning rates must be positive")

    @property
    def peak_learning_rate(self) -> float:
        """The learning rate after warm-up."""
        return self.learning_rate if self.learning_rate is not None else _DEFAULT_LR[self.stage]

    @property
    def final_learning_rate(self) -> float:
        """The learning rate at the last step (cosine and linear schedules)."""
        if self.min_learning_rate is not None:
            return self.min_learning_rate
        return min(_DEFAULT_MIN_LR[self.stage], self.peak_learning_rate)

    @property
    def trains_decoder(self) -> bool:
        """Stages lm and 2 change the decoder; the others only the heads."""
        return self.stage in ("lm", "2")

    @property
    def counts_only_responses(self) -> bool:
        """Whether prompt targets are masked out of the loss."""
        return self.trains_decoder or self.responses_only

    def learning_rate_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based): warm-up, then the schedule."""
        peak, final = self.peak_learning_rate, self.final_learning_rate
        if step < self.warmup_steps:
            return peak * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return peak
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps - 1))
        if self.schedule == "linear":
            return peak + (final - peak) * progress
        return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)
