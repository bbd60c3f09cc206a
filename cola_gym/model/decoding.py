"""Immutable decoding state: KV caches of the decoder and the policy, and the last ``h``.

Hugging Face's dynamic cache grows by concatenation, so every step makes new key/value
tensors and leaves the old ones untouched. A :class:`DecodingState` keeps references to
those tensors, which makes a state its own snapshot: restoring it costs nothing, and any
number of branches (tree search) can grow from one state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

KVPairs = tuple[tuple[torch.Tensor, torch.Tensor], ...]
"""Per layer ``(keys, values)``, each ``[B, num_kv_heads, T, head_dim]``."""


def cache_from_pairs(pairs: KVPairs) -> DynamicCache:
    """A cache that reads (and, when updated, concatenates onto) ``pairs`` without copying them."""
    cache = DynamicCache()
    for keys, values in pairs:
        layer = DynamicLayer()
        layer.lazy_initialization(keys, values)
        layer.keys, layer.values = keys, values
        cache.layers.append(layer)
    return cache


def pairs_from_cache(cache: DynamicCache) -> KVPairs:
    """The ``(keys, values)`` tensors a cache holds now."""
    layers = cast(list[DynamicLayer], cache.layers)
    return tuple((cast(torch.Tensor, layer.keys), cast(torch.Tensor, layer.values)) for layer in layers)


def _select_pairs(pairs: KVPairs, rows: torch.Tensor) -> KVPairs:
    return tuple((keys[rows], values[rows]) for keys, values in pairs)


@dataclass(frozen=True)
class DecodingState:
    """Where a batch of texts stands: everything needed to produce the next token.

    Attributes:
        decoder_kv: the decoder's KV cache over all ``T`` positions consumed so far.
        policy_kv: the policy blocks' KV cache, or ``None`` when the policy is not tracked.
        hidden: ``[B, d]`` h_t, the decoder's final normalised state at the last position.
        policy_logits: ``[B, K]`` pi(a_t | x_1..t), or ``None`` when the policy is not tracked.
        attention_mask: ``[B, T]`` 1 for tokens, 0 for (left) padding.
    """

    decoder_kv: KVPairs
    policy_kv: KVPairs | None
    hidden: torch.Tensor
    policy_logits: torch.Tensor | None
    attention_mask: torch.Tensor

    @property
    def batch_size(self) -> int:
        """B."""
        return self.attention_mask.shape[0]

    @property
    def length(self) -> int:
        """T, positions in the caches (padding included)."""
        return self.attention_mask.shape[1]

    @property
    def tracks_policy(self) -> bool:
        """Whether the policy's cache and logits are kept up to date."""
        return self.policy_kv is not None

    def select(self, rows: torch.Tensor | list[int]) -> DecodingState:
        """The sub-batch (or repeated rows) ``rows``: ``[B', ...]`` views of this state."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.attention_mask.device)
        return DecodingState(
            decoder_kv=_select_pairs(self.decoder_kv, index),
            policy_kv=None if self.policy_kv is None else _select_pairs(self.policy_kv, index),
            hidden=self.hidden[index],
            policy_logits=None if self.policy_logits is None else self.policy_logits[index],
            attention_mask=self.attention_mask[index],
        )

    def left_pad_to(self, width: int) -> DecodingState:
        """The same state with ``width - T`` padding columns added on the left."""
        extra = width - self.length
        if extra <= 0:
            return self

        def pad(tensor: torch.Tensor) -> torch.Tensor:
            shape = (*tensor.shape[:-2], extra, tensor.shape[-1])
            return torch.cat([tensor.new_zeros(shape), tensor], dim=-2)

        return DecodingState(
            decoder_kv=tuple((pad(k), pad(v)) for k, v in self.decoder_kv),
            policy_kv=None if self.policy_kv is None else tuple((pad(k), pad(v)) for k, v in self.policy_kv),
            hidden=self.hidden,
            policy_logits=self.policy_logits,
            attention_mask=torch.cat([self.attention_mask.new_zeros(self.batch_size, extra), self.attention_mask], 1),
        )

    def replace_rows(self, rows: Sequence[int], other: DecodingState) -> DecodingState:
        """This state with ``rows`` replaced by the rows of ``other`` (e.g. freshly prefilled prompts)."""
        width = max(self.length, other.length)
        base, new = self.left_pad_to(width), other.left_pad_to(width)
        index = torch.as_tensor(list(rows), dtype=torch.long, device=self.attention_mask.device)

        def put(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
            result = target.clone()
            result[index] = source
            return result

        def put_pairs(target: KVPairs | None, source: KVPairs | None) -> KVPairs | None:
            if target is None or source is None:
                return None
            return tuple((put(tk, sk), put(tv, sv)) for (tk, tv), (sk, sv) in zip(target, source, strict=True))

        logits = None
        if base.policy_logits is not None and new.policy_logits is not None:
            logits = put(base.policy_logits, new.policy_logits)
        return DecodingState(
            decoder_kv=put_pairs(base.decoder_kv, new.decoder_kv) or (),
            policy_kv=put_pairs(base.policy_kv, new.policy_kv),
            hidden=put(base.hidden, new.hidden),
            policy_logits=logits,
            attention_mask=put(base.attention_mask, new.attention_mask),
        ).compact()

    def keep_rows_where(self, keep: torch.Tensor, previous: DecodingState) -> DecodingState:
        """``hidden`` and ``policy_logits`` of ``previous`` for rows where ``keep`` is false ``[B]``.

        After a batched append in which some rows only received padding, those rows keep
        the state of their last real token.
        """
        keep_column = keep.to(self.hidden.device)[:, None]
        logits = self.policy_logits
        if logits is not None and previous.policy_logits is not None:
            logits = torch.where(keep_column, logits, previous.policy_logits)
        return DecodingState(self.decoder_kv, self.policy_kv, torch.where(keep_column, self.hidden, previous.hidden),
                             logits, self.attention_mask)  # fmt: skip

    def compact(self) -> DecodingState:
        """Drops leading columns that are padding in every row."""
        real = self.attention_mask.any(dim=0).nonzero()
        start = int(real[0]) if len(real) else 0
        if start == 0:
            return self

        def cut(tensor: torch.Tensor) -> torch.Tensor:
            return tensor[..., start:, :]

        return DecodingState(
            decoder_kv=tuple((cut(k), cut(v)) for k, v in self.decoder_kv),
            policy_kv=None if self.policy_kv is None else tuple((cut(k), cut(v)) for k, v in self.policy_kv),
            hidden=self.hidden,
            policy_logits=self.policy_logits,
            attention_mask=self.attention_mask[:, start:],
        )
