"""The learned CoLA parts: inverse dynamics model, codebook, world-model merge, policy.

All of them read ``h``, the decoder's final normalised hidden states (the vectors its
LM head reads). Shapes: ``B`` batch, ``T`` positions, ``d`` decoder width, ``K`` codes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import LlamaConfig, LlamaModel
from transformers.cache_utils import DynamicCache
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from cola_gym.model.config import CoLAConfig


def trunk_config(config: CoLAConfig, decoder_config: Any, num_layers: int) -> LlamaConfig:
    """The Llama config of a stack of head blocks (same positions and RoPE as the decoder)."""
    rope = getattr(decoder_config, "rope_parameters", None)
    return LlamaConfig(
        vocab_size=1,
        hidden_size=config.require("head_hidden_size"),
        intermediate_size=config.require("head_intermediate_size"),
        num_hidden_layers=num_layers,
        num_attention_heads=config.require("head_num_attention_heads"),
        num_key_value_heads=config.require("head_num_key_value_heads"),
        max_position_embeddings=decoder_config.max_position_embeddings,
        rms_norm_eps=decoder_config.rms_norm_eps,
        rope_parameters=dict(rope) if rope else None,
        initializer_range=getattr(decoder_config, "initializer_range", 0.02),
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        tie_word_embeddings=False,
    )


class HeadTrunk(nn.Module):
    """Llama decoder blocks over ``h`` with their own KV cache: ``[B, T, d] -> [B, T, d_head]``."""

    def __init__(self, config: CoLAConfig, decoder_config: Any, num_layers: int) -> None:
        super().__init__()
        width = config.require("head_hidden_size")
        self.in_proj: nn.Module = (
            nn.Identity()
            if width == decoder_config.hidden_size
            else nn.Linear(decoder_config.hidden_size, width, bias=False)
        )
        self.blocks = LlamaModel(trunk_config(config, decoder_config, num_layers))
        # The blocks read hidden states, never token ids.
        self.blocks.embed_tokens = None  # type: ignore[assignment]

    def forward(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: DynamicCache | None = None,
    ) -> torch.Tensor:
        """Runs the blocks.

        Args:
            hidden: ``[B, T, d]`` decoder states (new positions only when ``cache`` holds the past).
            attention_mask: ``[B, T_past + T]``, 1 for real tokens, 0 for padding.
            position_ids: ``[B, T]`` positions of the new states.
            cache: KV cache of earlier positions; updated in place.

        Returns:
            ``[B, T, d_head]`` normalised outputs.
        """
        out = self.blocks(
            inputs_embeds=self.in_proj(hidden),
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=cache is not None,
        )
        return out.last_hidden_state


class LatentActionHead(nn.Module):
    """Head blocks followed by a K-way linear read-out: ``[B, T, d] -> [B, T, K]``."""

    def __init__(self, config: CoLAConfig, decoder_config: Any, num_layers: int) -> None:
        super().__init__()
        self.trunk = HeadTrunk(config, decoder_config, num_layers)
        self.out = nn.Linear(config.require("head_hidden_size"), config.num_actions, bias=False)

    def forward(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: DynamicCache | None = None,
    ) -> torch.Tensor:
        """Action logits ``[B, T, K]`` for every position of ``hidden`` (see :class:`HeadTrunk`)."""
        return self.out(self.trunk(hidden, attention_mask, position_ids, cache))


class InverseDynamicsModel(LatentActionHead):
    """IDM: which latent action a_t turned the prefix ``x_1..t`` into ``x_t+1``.

    The blocks are causal, so the action for step ``t`` is read at position ``t + 1``,
    the first position that has seen the token ``x_t+1`` (one future token).
    """

    def action_logits(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """``[B, T, d]`` states of a whole sequence -> ``[B, T - 1, K]`` logits of a_0 .. a_T-2."""
        return self(hidden, attention_mask, position_ids)[:, 1:]


class LatentPolicy(LatentActionHead):
    """pi(a_t | x_1..t): logits at position ``t`` choose the action that produces ``x_t+1``."""


class ActionCodebook(nn.Module):
    """The K x d table of action embeddings e_a (a bias-free linear map of a one-hot)."""

    def __init__(self, num_actions: int, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(num_actions, hidden_size, bias=False)

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        """Integer actions ``[...]`` -> embeddings ``[..., d]``."""
        return self.proj.weight.t()[actions]

    def embed_soft(self, weights: torch.Tensor) -> torch.Tensor:
        """(Relaxed) one-hots ``[..., K]`` -> embeddings ``[..., d]``; keeps gradients for Gumbel-softmax."""
        return self.proj(weights)


class MergeMLP(nn.Module):
    """SwiGLU on ``[s; e_a]`` whose output is added to ``s``; zero-initialised output projection."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(2 * hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(2 * hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, state: torch.Tensor, action_embedding: torch.Tensor) -> torch.Tensor:
        """``[..., d]`` state and action embedding -> ``[..., d]`` residual update."""
        x = torch.cat([state, action_embedding], dim=-1)
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class WorldModelMerge(nn.Module):
    """The world model's merge stack: ``s <- s + MLP([s; e_a])``, starting from ``s = h_t``."""

    def __init__(self, config: CoLAConfig, hidden_size: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MergeMLP(hidden_size, config.require("merge_intermediate_size")) for _ in range(config.merge_num_layers)
        )

    def forward(self, hidden: torch.Tensor, action_embedding: torch.Tensor) -> torch.Tensor:
        """``[..., d]`` decoder state h_t and e_a -> ``[..., d]`` merged state s."""
        state = hidden
        for layer in self.layers:
            state = state + layer(state, action_embedding)
        return state


def initialize_heads(module: nn.Module, std: float, generator: torch.Generator) -> None:
    """Initialises every parameter of ``module`` from ``generator`` (no global RNG).

    Linear weights ~ N(0, std^2); norm weights = 1; merge output projections = 0, so the
    untrained world model leaves ``h_t`` unchanged for every action.
    """
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.Linear):
                sub.weight.normal_(0.0, std, generator=generator)
                if sub.bias is not None:
                    sub.bias.zero_()
            elif isinstance(sub, LlamaRMSNorm):
                sub.weight.fill_(1.0)
        for sub in module.modules():
            if isinstance(sub, MergeMLP):
                sub.down_proj.weight.zero_()
