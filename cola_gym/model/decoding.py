"""Immutable decoding state: KV caches of the decoder and the policy, and the last ``h``.

Hugging Face's dynamic cache grows by concatenation, so every step makes new key/value
tensors and leaves the old ones untouched. A :class:`DecodingState` keeps references to
those tensors, which makes a state its own snapshot: restoring it costs nothing, and any
number of branches (tree search) can grow from one state.
"""

from __future__ import annotations

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
