"""The CoLA model: a frozen Llama-family decoder with latent-action heads.

Language generation is an MDP over token prefixes; CoLA acts with a latent code a_t
from a K-way codebook instead of a token. With ``h_t`` the decoder's final normalised
state (Jia et al., ICML 2025, and the authors' release):

- inverse dynamics model: ``(x_1..t, x_t+1) -> a_t``, decoder blocks over ``h``;
- codebook: ``a_t -> e_a``;
- world model: ``s = h_t``, ``s <- s + MLP([s; e_a])`` per merge layer, then
  ``p(x_t+1) = softmax(lm_head(s))`` (``output_form="residual"``) or the release's
  ``lm_head(final_norm(s) - h_t)`` (``output_form="paper"``); the token is its argmax;
- policy: ``pi(a_t | x_1..t)``, decoder blocks over ``h`` with their own KV cache.

The action never enters the decoder's layers, so one action -> one token costs one
cached decoder step plus the small heads.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.cache_utils import DynamicCache

from cola_gym.model.checkpoint import load_cola, save_cola
from cola_gym.model.config import CoLAConfig
from cola_gym.model.decoders import EMBEDDED_DECODER, DecoderSettings, check_llama_family, load_decoder
from cola_gym.model.decoding import (
    DECODER,
    POLICY,
    Q_NETWORK,
    DecodingState,
    KVArena,
    KVPairs,
    arena_cache,
    cache_contents,
    ragged_cache,
)
from cola_gym.model.heads import (
    ActionCodebook,
    InverseDynamicsModel,
    LatentActionHead,
    LatentPolicy,
    WorldModelMerge,
    initialize_heads,
)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` 0/1 mask (left padding) -> ``[B, T]`` position ids, padding at 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def padded_attention_mask(
    attention_mask: torch.Tensor, new_positions: int, implementation: str, dtype: torch.dtype
) -> torch.Tensor:
    """The mask of the last ``new_positions`` queries over all keys, for a chunk with padding.

    Causal, padding hidden, and every query sees at least itself: a padding query has nothing
    else to attend to, and a fully masked query row gives NaN on some CUDA attention kernels
    (CPU kernels return zeros). ``[B, 1, n, T]``: boolean for ``sdpa``, additive for ``eager``;
    other implementations (flash attention) take the ``[B, T]`` mask as it is.
    """
    if implementation not in ("sdpa", "eager"):
        return attention_mask
    width = attention_mask.shape[1]
    keys = torch.arange(width, device=attention_mask.device)
    queries = keys[width - new_positions :, None]
    allowed = (((keys <= queries) & attention_mask.bool()[:, None, :]) | (keys == queries))[:, None]
    if implementation == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


class CoLAModel(nn.Module):
    """A decoder (frozen) and the CoLA parts around it.

    Args:
        config: shapes of the heads; unresolved fields are filled from the decoder.
        decoder: a Hugging Face Llama-family causal LM (optionally bitsandbytes-quantized).
        tokenizer: its tokenizer.
        decoder_name_or_path: how to find the decoder again (recorded in checkpoints).
    """

    def __init__(
        self, config: CoLAConfig, decoder: Any, tokenizer: Any, decoder_name_or_path: str | None = None
    ) -> None:
        super().__init__()
        check_llama_family(decoder)
        self.config = config if config.is_resolved else config.resolve(decoder.config)
        self.decoder: Any = decoder
        self.tokenizer: Any = tokenizer
        self.decoder_name_or_path = decoder_name_or_path or getattr(decoder.config, "_name_or_path", None)
        self.name_or_path: str | None = None
        self.decoder_adapter: Path | None = None  # LoRA adapters merged into the decoder, kept for saving
        decoder_config = decoder.config
        width = decoder_config.hidden_size
        # Hugging Face constructors draw from the global RNG: keep the caller's stream intact
        # and initialise from an explicit generator instead.
        with torch.random.fork_rng(devices=[]):
            self.idm = InverseDynamicsModel(self.config, decoder_config, self.config.require("idm_num_layers"))
            self.codebook = ActionCodebook(self.config.num_actions, width)
            self.world_model = WorldModelMerge(self.config, width)
            self.policy = LatentPolicy(self.config, decoder_config, self.config.require("policy_num_layers"))
            self.q_network: LatentActionHead | None = None
            if self.config.q_network_num_layers:
                self.q_network = LatentActionHead(self.config, decoder_config, self.config.q_network_num_layers)
        generator = torch.Generator().manual_seed(self.config.init_seed)
        std = getattr(decoder_config, "initializer_range", 0.02)
        for part in self.heads().values():
            initialize_heads(part, std, generator)
            part.to(device=self.device, dtype=self.head_dtype)

    @classmethod
    def from_decoder(
        cls,
        decoder: str | os.PathLike[str] | None = None,
        config: CoLAConfig | None = None,
        settings: DecoderSettings | None = None,
    ) -> CoLAModel:
        """Fresh (untrained) CoLA heads on a decoder loaded by path, Hub id, or the default."""
        model, tokenizer = load_decoder(decoder, settings)
        name = EMBEDDED_DECODER if decoder is None else str(decoder)
        return cls(config or CoLAConfig(), model, tokenizer, decoder_name_or_path=name)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] | None = None,
        *,
        decoder: str | os.PathLike[str] | None = None,
        settings: DecoderSettings | None = None,
    ) -> CoLAModel:
        """Loads a saved CoLA model; a plain decoder checkpoint gets fresh heads.

        Args:
            name_or_path: a directory written by :meth:`save_pretrained`, a plain Hugging
                Face decoder (directory or Hub id: fresh heads), ``None`` for the default
                model (the shipped heads on the embedded SmolLM2 decoder), or
                ``"embedded:SmolLM2-135M-Instruct"`` for fresh heads on that decoder.
            decoder: overrides the decoder the checkpoint refers to.
            settings: device, dtype and quantization of the decoder.
        """
        return load_cola(cls, name_or_path, decoder=decoder, settings=settings)

    def save_pretrained(
        self, path: str | os.PathLike[str], store_decoder: bool = False, dtype: torch.dtype | None = None
    ) -> None:
        """Writes config + head weights (safetensors); ``store_decoder`` also copies the decoder.

        ``dtype`` (e.g. ``torch.bfloat16``) stores the heads at lower precision.
        """
        save_cola(self, path, store_decoder=store_decoder, dtype=dtype)

    def add_q_network(self, num_layers: int, seed: int = 0) -> None:
        """Adds a fresh Q-network (``num_layers`` head blocks) for tree search; train it with stage q."""
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.config = dataclasses.replace(self.config, q_network_num_layers=num_layers)
        with torch.random.fork_rng(devices=[]):
            self.q_network = LatentActionHead(self.config, self.decoder.config, num_layers)
        initialize_heads(self.q_network, getattr(self.decoder.config, "initializer_range", 0.02),
                         torch.Generator().manual_seed(seed))  # fmt: skip
        self.q_network.to(device=self.device, dtype=self.head_dtype)

    # ----------------------------------------------------------------- parts
    def heads(self) -> dict[str, nn.Module]:
        """The learned CoLA parts (everything but the decoder), by name."""
        parts: dict[str, nn.Module] = {"idm": self.idm, "codebook": self.codebook, "world_model": self.world_model,
                                       "policy": self.policy}  # fmt: skip
        if self.q_network is not None:
            parts["q_network"] = self.q_network
        return parts

    @property
    def decoder_base(self) -> Any:
        """The decoder without its LM head (embeddings, layers, final norm)."""
        return self.decoder.get_decoder()

    @property
    def lm_head(self) -> Any:
        """The decoder's LM head."""
        return self.decoder.get_output_embeddings()

    @property
    def final_norm(self) -> Any:
        """The decoder's final norm."""
        return self.decoder_base.norm

    @property
    def device(self) -> torch.device:
        """Where the LM head (and the CoLA heads) live."""
        return torch.device(self.lm_head.weight.device)

    @property
    def head_dtype(self) -> torch.dtype:
        """Dtype of the CoLA heads: the decoder's compute dtype (its LM head is never quantized)."""
        dtype: torch.dtype = self.lm_head.weight.dtype
        return dtype

    @property
    def num_actions(self) -> int:
        """K."""
        return self.config.num_actions

    @property
    def hidden_size(self) -> int:
        """d, the decoder's width (size of h_t)."""
        return int(self.decoder.config.hidden_size)

    def hidden_state_bound(self) -> torch.Tensor:
        """``float32[d]``: no component of h_t can exceed this in absolute value.

        ``RMSNorm(x)_i = w_i x_i / rms(x)`` and ``|x_i| <= sqrt(d) rms(x)``, so
        ``|h_i| <= sqrt(d) |w_i|`` (plus ``|b_i|`` for a norm with a bias); 1 % margin for rounding.
        """
        norm = self.final_norm
        bound = self.hidden_size**0.5 * norm.weight.detach().abs().float().cpu()
        bias = getattr(norm, "bias", None)
        if bias is not None:
            bound = bound + bias.detach().abs().float().cpu()
        return bound * 1.01 + 1e-3

    def stop_token_ids(self) -> frozenset[int]:
        """Token ids that end a turn: the tokenizer's and the generation config's EOS ids."""
        ids: set[int] = set()
        for source in (self.tokenizer.eos_token_id, getattr(self.decoder.generation_config, "eos_token_id", None)):
            if isinstance(source, int):
                ids.add(source)
            elif source is not None:
                ids.update(int(i) for i in source)
        return frozenset(ids)

    # ----------------------------------------------------- whole sequences
    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T]`` tokens -> ``[B, T, d]`` h, the decoder's final normalised states."""
        input_ids = input_ids.to(self.device)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(self.device)
        out = self.decoder_base(input_ids=input_ids, attention_mask=mask, position_ids=positions_from_mask(mask))
        return out.last_hidden_state

    def idm_logits(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, d]`` h of a whole text -> ``[B, T - 1, K]`` IDM logits of a_0 .. a_T-2."""
        mask, positions = self.mask_and_positions(hidden, attention_mask)
        return self.idm.action_logits(hidden.to(self.head_dtype), mask, positions)

    def policy_logits(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, d]`` h -> ``[B, T, K]`` policy logits (position t chooses a_t)."""
        mask, positions = self.mask_and_positions(hidden, attention_mask)
        return self.policy(hidden.to(self.head_dtype), mask, positions)

    def world_model_logits(self, hidden: torch.Tensor, action_embedding: torch.Tensor) -> torch.Tensor:
        """h_t ``[..., d]`` and e_a ``[..., d]`` -> next-token logits ``[..., V]``."""
        state = self.world_model(hidden.to(self.head_dtype), action_embedding)
        if self.config.output_form == "paper":
            state = self.final_norm(state) - hidden
        return self.lm_head(state.to(self.lm_head.weight.dtype))

    def decoder_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The bare decoder's next-token logits ``[..., V]`` from h ``[..., d]``."""
        return self.lm_head(hidden.to(self.lm_head.weight.dtype))

    def mask_and_positions(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(attention_mask, position ids)``, both ``[B, T]``, for states ``hidden [B, T, d]``."""
        mask = attention_mask
        if mask is None:
            mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        return mask, positions_from_mask(mask)

    # ------------------------------------------------------------ decoding
    @torch.inference_mode()
    def start(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        track_policy: bool = True,
        track_q: bool = False,
    ) -> DecodingState:
        """Prefills a batch of (left-padded) prompts ``[B, T]`` into a fresh decoding state.

        ``track_policy`` / ``track_q`` keep the policy's logits / the Q-network's values
        (each with its own KV cache) up to date in every later state.
        """
        if track_q and self.q_network is None:
            raise ValueError("this model has no Q-network (train one with `cola-gym train --stage q`)")
        tracked = [name for name, on in ((POLICY, track_policy), (Q_NETWORK, track_q)) if on]
        return self._advance(None, tracked, input_ids, attention_mask)

    @torch.inference_mode()
    def append(
        self, state: DecodingState, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> DecodingState:
        """Feeds ``[B, n]`` more tokens (one cached prefill; padding marked by ``attention_mask``)."""
        return self._advance(state, list(state.head_kv), input_ids, attention_mask)

    @torch.inference_mode()
    def append_ragged(
        self,
        state: DecodingState,
        input_ids: torch.Tensor,
        lengths: torch.Tensor | None = None,
        rows: torch.Tensor | Sequence[int] | None = None,
    ) -> DecodingState:
        """Feeds row ``r`` its first ``lengths[r]`` tokens of ``input_ids [R, n]`` at its own end.

        Unlike :meth:`append`, rows fed fewer tokens (or none) get no padding: each row's
        tokens go to the columns right after its last token, so the cache stays as wide as its
        longest row. ``rows`` (default: all) are the rows of ``state`` the ``R`` feeds are for;
        the others keep their state. Rows fed nothing keep their ``hidden`` and head outputs.
        Exact: every row's state is the one :meth:`append` of its tokens alone gives.
        """
        input_ids = input_ids.to(self.device)
        fed, new_positions = input_ids.shape
        device = state.attention_mask.device
        steps = torch.arange(new_positions, device=device)
        counts = torch.full((fed,), new_positions, device=device) if lengths is None else lengths.to(device)
        index = None if rows is None else torch.as_tensor(rows, dtype=torch.long, device=device)
        ends = state.ends if index is None else state.ends[index]
        if not new_positions or (lengths is not None and not int(counts.max())):
            return state
        width = max(state.length, int((ends + counts).max()))
        state = state.with_room(int(ends.max()) + new_positions)  # padding is written past a row's end
        arena = state.arena
        assert arena is not None
        start = state.arena_start

        real = steps[None, :] < counts[:, None]
        columns = ends[:, None] + steps[None, :]
        mask = state.attention_mask
        if width > state.length:
            mask = torch.cat([mask, mask.new_zeros(state.batch_size, width - state.length)], dim=1)
        else:
            mask = mask.clone()
        all_rows = torch.arange(state.batch_size, device=device) if index is None else index
        fed_rows = all_rows[:, None].expand(fed, new_positions)
        mask[fed_rows[real], columns[real]] = 1
        fed_mask = mask if index is None else mask[index]
        positions = state.attention_mask.sum(dim=1)[all_rows][:, None] + steps[None, :]
        keys = torch.arange(width, device=device)
        allowed = fed_mask.bool()[:, None, :] & (keys[None, None, :] <= columns[:, :, None])
        # a padding query sees one column (any finite one): its output is never read
        allowed |= ~real[:, :, None] & (keys[None, None, :] == columns.clamp(max=width - 1)[:, :, None])
        allowed = allowed[:, None]

        def attention(module: nn.Module, dtype: torch.dtype) -> torch.Tensor:
            implementation = str(getattr(module.config, "_attn_implementation", None) or "eager")
            if implementation == "sdpa":
                return allowed
            if implementation == "eager":
                return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(
                    ~allowed, torch.finfo(dtype).min
                )
            raise NotImplementedError(f"ragged appends need sdpa or eager attention, not {implementation!r}")

        def cache(name: str) -> DynamicCache:
            return ragged_cache(arena.storage[name], index, start + columns, real, start, width)

        base, dtype = self.decoder_base, self.lm_head.weight.dtype
        hidden = base(
            input_ids=input_ids,
            attention_mask=attention(base, dtype),
            position_ids=positions,
            past_key_values=cache(DECODER),
            use_cache=True,
        ).last_hidden_state
        has_tokens = counts > 0
        last = (counts - 1).clamp(min=0)
        picked = torch.arange(fed, device=device)

        def merged(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            new = torch.where(has_tokens[:, None], new[picked, last].to(old.dtype), old[all_rows])
            if index is None:
                return new
            out = old.clone()
            out[index] = new
            return out

        outputs = {}
        for name in state.head_kv:
            head = self._tracked_head(name)
            logits = head(
                hidden.to(self.head_dtype), attention(head.trunk.blocks, self.head_dtype), positions, cache(name)
            )
            outputs[name] = merged(state.head_outputs[name], logits)

        return DecodingState(
            decoder_kv=arena.views(DECODER, start, width),
            hidden=merged(state.hidden, hidden),
            attention_mask=mask,
            head_kv={name: arena.views(name, start, width) for name in state.head_kv},
            head_outputs=outputs,
            arena=arena,
            arena_start=start,
            arena_version=arena.written(),
        )

    @torch.inference_mode()
    def next_token_logits(self, state: DecodingState, actions: torch.Tensor) -> torch.Tensor:
        """World-model logits ``[B, V]`` of the next token under actions ``[B]``."""
        return self.world_model_logits(state.hidden, self.codebook(actions.to(self.device)))

    @torch.inference_mode()
    def next_tokens(self, state: DecodingState, actions: torch.Tensor) -> torch.Tensor:
        """The token ``[B]`` each action produces (greedy under the world model)."""
        return self.next_token_logits(state, actions).argmax(-1)

    @torch.inference_mode()
    def tokens_of_every_action(self, hidden: torch.Tensor, chunk: int = 16) -> torch.Tensor:
        """The token ``[N, K]`` each of the K codes produces from each decoder state ``hidden [N, d]``.

        Codes that produce the same token from a state are aliases there: the episode cannot
        tell them apart. ``chunk`` states at a time bound the ``[chunk, K, V]`` logits.
        """
        embeddings = self.codebook(torch.arange(self.num_actions, device=self.device))
        rows = []
        for start in range(0, hidden.shape[0], chunk):
            part = hidden[start : start + chunk].to(self.device)
            pairs = part[:, None, :].expand(-1, self.num_actions, -1)
            rows.append(self.world_model_logits(pairs, embeddings.expand(part.shape[0], -1, -1)).argmax(-1))
        return torch.cat(rows) if rows else torch.zeros(0, self.num_actions, dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def step(self, state: DecodingState, actions: torch.Tensor) -> tuple[torch.Tensor, DecodingState]:
        """One latent action -> one token: returns the tokens ``[B]`` and the advanced state."""
        tokens = self.next_tokens(state, actions)
        return tokens, self.append(state, tokens[:, None])

    def _tracked_head(self, name: str) -> LatentActionHead:
        head = self.policy if name == POLICY else self.q_network
        assert head is not None
        return head

    def _advance(
        self,
        past: DecodingState | None,
        tracked: Sequence[str],
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
    ) -> DecodingState:
        """Feeds ``input_ids`` after ``past`` (``None``: prefill) into the decoder and the ``tracked`` heads."""
        input_ids = input_ids.to(self.device)
        new_positions = input_ids.shape[1]
        has_padding = attention_mask is not None and not bool(attention_mask.all())
        chunk_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(self.device).long()
        past_mask = chunk_mask.new_zeros(input_ids.shape[0], 0) if past is None else past.attention_mask
        mask = torch.cat([past_mask, chunk_mask], dim=1)
        positions = positions_from_mask(mask)[:, -new_positions:]
        arena = past.arena if past is not None and past.grows_in_place(new_positions) else None
        start = past.arena_start if past is not None and arena is not None else 0
        real = chunk_mask.bool() if has_padding else None

        def cache(name: str, pairs: KVPairs) -> DynamicCache:
            return arena_cache(pairs, None if arena is None else arena.storage[name], start, new_positions, real)

        def attention(module: nn.Module, dtype: torch.dtype) -> torch.Tensor:
            if not has_padding:
                return mask
            implementation = str(getattr(module.config, "_attn_implementation", None) or "eager")
            return padded_attention_mask(mask, new_positions, implementation, dtype)

        base, dtype = self.decoder_base, self.lm_head.weight.dtype
        decoder_cache = cache(DECODER, () if past is None else past.decoder_kv)
        hidden = base(
            input_ids=input_ids,
            attention_mask=attention(base, dtype),
            position_ids=positions,
            past_key_values=decoder_cache,
            use_cache=True,
        ).last_hidden_state
        views, storage = {}, {}
        views[DECODER], storage[DECODER] = cache_contents(decoder_cache)
        outputs = {}
        for name in tracked:
            head = self._tracked_head(name)
            head_cache = cache(name, () if past is None else past.head_kv[name])
            head_mask = attention(head.trunk.blocks, self.head_dtype)
            outputs[name] = head(hidden.to(self.head_dtype), head_mask, positions, head_cache)[:, -1]
            views[name], storage[name] = cache_contents(head_cache)
        if arena is None:
            arena = KVArena(storage)
        return DecodingState(
            decoder_kv=views.pop(DECODER),
            hidden=hidden[:, -1],
            attention_mask=mask,
            head_kv=views,
            head_outputs=outputs,
            arena=arena,
            arena_start=start,
            arena_version=arena.written(),
        )
