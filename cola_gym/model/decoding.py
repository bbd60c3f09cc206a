"""Immutable decoding state: KV caches of the decoder and the tracked heads, and the last ``h``.

A :class:`DecodingState` holds views of its key/value tensors that nothing ever writes to
again, which makes a state its own snapshot: restoring it costs nothing, and any number of
branches (tree search) can grow from one state.

The views live in a :class:`KVArena`, storage with room to grow: appending to the newest
state of a lineage writes the new positions in place (no per-step concatenation of the
whole cache, as Hugging Face's dynamic cache does). Only the first branch grown from a
state can write past it; any other branch finds the arena's frontier moved on and copies
its state into an arena of its own (copy-on-branch).

Besides the decoder, a state can *track* heads that read ``h`` with their own KV cache
(the CoLA policy, the Q-network): their outputs at the last position are kept up to date.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import cast

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

KVPair = tuple[torch.Tensor, torch.Tensor]
KVPairs = tuple[KVPair, ...]
"""Per layer ``(keys, values)``, each ``[B, num_kv_heads, T, head_dim]``."""

DECODER = "decoder"
POLICY = "policy"
Q_NETWORK = "q_network"


MIN_HEADROOM = 64
"""Positions an arena keeps free beyond what it was made for (at least; it doubles as it grows)."""

KV_IN_PLACE = True
"""Whether appends write into the arena; ``False`` copies the whole cache on every append, as
a concatenating cache does (for side-by-side benchmarks)."""


@dataclass(eq=False)
class KVArena:
    """Storage with room to grow for the caches of one lineage of states.

    Attributes:
        storage: per cache (``"decoder"`` and the tracked heads' names), per layer
            ``(keys, values)``, each ``[B, num_kv_heads, capacity, head_dim]``.
        frontier: storage columns written so far; a state that ends there may write beyond it.
    """

    storage: dict[str, KVPairs]
    frontier: int

    @property
    def capacity(self) -> int:
        """Columns of the storage."""
        for pairs in self.storage.values():
            if pairs:
                return pairs[0][0].shape[-2]
        return 0


class _ArenaLayer(DynamicLayer):
    """A cache layer that writes new positions into storage columns ``[end, end + n)``.

    Given no storage (a new lineage), it allocates storage with headroom and copies the past
    into it on its first update.
    """

    def __init__(
        self, past: KVPair | None, storage: KVPair | None, start: int, new_positions: int, real: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.past, self.storage, self.start, self.new_positions = past, storage, start, new_positions
        self.real = None if real is None else real[:, None, :, None]
        if past is not None:
            self.lazy_initialization(*past)
            self.keys, self.values = past

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        past_length = 0 if self.past is None else self.past[0].shape[-2]
        if self.storage is None:
            needed = past_length + self.new_positions
            headroom = max(needed, MIN_HEADROOM) if KV_IN_PLACE else 0
            shape = (*key_states.shape[:-2], needed + headroom, key_states.shape[-1])
            self.storage = (key_states.new_empty(shape), value_states.new_empty(shape))
            self.start = 0
            if self.past is not None:
                for column, tensor in zip(self.storage, self.past, strict=True):
                    column[..., :past_length, :] = tensor
        if self.real is not None:  # padding keeps zeros: a non-finite state there cannot reach a real row
            key_states, value_states = (torch.where(self.real, states, 0) for states in (key_states, value_states))
        end = self.start + past_length
        stop = end + key_states.shape[-2]
        keys, values = self.storage
        keys[..., end:stop, :] = key_states
        values[..., end:stop, :] = value_states
        self.keys, self.values = keys[..., self.start : stop, :], values[..., self.start : stop, :]
        return self.keys, self.values


def arena_cache(
    past: KVPairs, storage: KVPairs | None, start: int, new_positions: int, real: torch.Tensor | None = None
) -> DynamicCache:
    """A cache over ``past`` that writes ``new_positions`` more positions into ``storage``
    from column ``start + len(past)`` on (``None``: into new storage, copying the past once).

    ``real`` (``[B, new_positions]``, true for tokens, false for padding) zeroes the padding's
    keys and values as they are written.
    """
    cache = DynamicCache()
    if past:
        for index, pair in enumerate(past):
            layer_storage = None if storage is None else storage[index]
            cache.layers.append(_ArenaLayer(pair, layer_storage, start, new_positions, real))
    else:
        cache.layer_class_to_replicate = lambda: _ArenaLayer(None, None, 0, new_positions, real)  # type: ignore[assignment]
    return cache


def cache_contents(cache: DynamicCache) -> tuple[KVPairs, KVPairs]:
    """``(views, storage)``: the ``(keys, values)`` a cache built by :func:`arena_cache` holds
    now, and the storage they are views of."""
    layers = cast(list[_ArenaLayer], cache.layers)
    views = tuple((cast(torch.Tensor, layer.keys), cast(torch.Tensor, layer.values)) for layer in layers)
    return views, tuple(cast(KVPair, layer.storage) for layer in layers)


def _map_pairs(pairs: KVPairs, function: Callable[[torch.Tensor], torch.Tensor]) -> KVPairs:
    return tuple((function(keys), function(values)) for keys, values in pairs)


@dataclass(frozen=True)
class DecodingState:
    """Where a batch of texts stands: everything needed to produce the next token.

    Attributes:
        decoder_kv: the decoder's KV cache over all ``T`` positions consumed so far.
        hidden: ``[B, d]`` h_t, the decoder's final normalised state at the last position.
        attention_mask: ``[B, T]`` 1 for tokens, 0 for padding.
        head_kv: KV caches of the tracked heads, by head name.
        head_outputs: ``[B, K]`` outputs of the tracked heads at the last position
            (policy logits, Q-values), by head name.
        arena: the storage the caches are views of, when they are views of one (``None``:
            the next append copies them into a new arena).
        arena_start: the arena column of this state's first position.
    """

    decoder_kv: KVPairs
    hidden: torch.Tensor
    attention_mask: torch.Tensor
    head_kv: Mapping[str, KVPairs] = field(default_factory=dict)
    head_outputs: Mapping[str, torch.Tensor] = field(default_factory=dict)
    arena: KVArena | None = None
    arena_start: int = 0

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
        return POLICY in self.head_kv

    @property
    def policy_logits(self) -> torch.Tensor | None:
        """``[B, K]`` pi(a_t | x_1..t) (``None`` when the policy is not tracked)."""
        return self.head_outputs.get(POLICY)

    @property
    def q_values(self) -> torch.Tensor | None:
        """``[B, K]`` Q(x_1..t, a) of the Q-network (``None`` when it is not tracked)."""
        return self.head_outputs.get(Q_NETWORK)

    def grows_in_place(self, new_positions: int) -> bool:
        """Whether appending ``new_positions`` writes into this state's arena (no copy)."""
        arena, end = self.arena, self.arena_start + self.length
        return KV_IN_PLACE and arena is not None and arena.frontier == end and end + new_positions <= arena.capacity

    def _map(
        self,
        kv: Callable[[torch.Tensor], torch.Tensor],
        rows: Callable[[torch.Tensor], torch.Tensor],
        mask: Callable[[torch.Tensor], torch.Tensor],
    ) -> DecodingState:
        """A state with ``kv`` applied to every cache tensor, ``rows`` to per-row outputs, ``mask`` to the
        mask; out of any arena."""
        return DecodingState(
            decoder_kv=_map_pairs(self.decoder_kv, kv),
            hidden=rows(self.hidden),
            attention_mask=mask(self.attention_mask),
            head_kv={name: _map_pairs(pairs, kv) for name, pairs in self.head_kv.items()},
            head_outputs={name: rows(output) for name, output in self.head_outputs.items()},
        )

    def _into_new_arena(
        self,
        batch: int,
        width: int,
        fill: Callable[[torch.Tensor, torch.Tensor], object],
        rows: Callable[[torch.Tensor], torch.Tensor],
        mask: torch.Tensor,
    ) -> DecodingState:
        """A state of ``batch`` rows and ``width`` columns whose caches ``fill(source, out)``
        writes straight into a new arena with headroom, so its next append writes in place
        (no second copy); ``rows`` maps the per-row outputs."""
        capacity = width + (max(width, MIN_HEADROOM) if KV_IN_PLACE else 0)
        storage: dict[str, KVPairs] = {}
        views: dict[str, KVPairs] = {}
        for name, pairs in {DECODER: self.decoder_kv, **self.head_kv}.items():
            stored, viewed = [], []
            for pair in pairs:
                columns = []
                for tensor in pair:
                    store = tensor.new_empty((batch, *tensor.shape[1:-2], capacity, tensor.shape[-1]))
                    fill(tensor, store[..., :width, :])
                    columns.append(store)
                stored.append((columns[0], columns[1]))
                viewed.append((columns[0][..., :width, :], columns[1][..., :width, :]))
            storage[name], views[name] = tuple(stored), tuple(viewed)
        decoder_kv = views.pop(DECODER)
        outputs = {name: rows(output) for name, output in self.head_outputs.items()}
        return DecodingState(decoder_kv, rows(self.hidden), mask, views, outputs, KVArena(storage, width), 0)

    def select(self, rows: torch.Tensor | Sequence[int]) -> DecodingState:
        """The sub-batch (or repeated rows) ``rows``: ``[B', ...]`` of this state.

        A run of consecutive rows (all of them, say) is a view, not a copy; other rows are
        copied into an arena of their own that the next append grows in place.
        """
        index = torch.as_tensor(rows, dtype=torch.long, device=self.attention_mask.device)
        if len(index) and bool((index.diff() == 1).all()):
            first, stop = int(index[0]), int(index[-1]) + 1
            if first == 0 and stop == self.batch_size:
                return self
            return self._map(lambda t: t[first:stop], lambda t: t[first:stop], lambda t: t[first:stop])

        def fill(tensor: torch.Tensor, out: torch.Tensor) -> None:
            torch.index_select(tensor, 0, index.to(tensor.device), out=out)

        return self._into_new_arena(len(index), self.length, fill, lambda t: t[index], self.attention_mask[index])

    def copy(self) -> DecodingState:
        """The same state in storage of its own (a :meth:`select` of a few rows is a view that
        keeps its whole batch alive)."""
        return self._map(torch.clone, torch.clone, torch.clone)

    def left_pad_to(self, width: int) -> DecodingState:
        """The same state with ``width - T`` padding columns added on the left."""
        extra = width - self.length
        if extra <= 0:
            return self

        def pad(tensor: torch.Tensor) -> torch.Tensor:
            shape = (*tensor.shape[:-2], extra, tensor.shape[-1])
            return torch.cat([tensor.new_zeros(shape), tensor], dim=-2)

        def pad_mask(mask: torch.Tensor) -> torch.Tensor:
            return torch.cat([mask.new_zeros(mask.shape[0], extra), mask], dim=1)

        return self._map(pad, lambda t: t, pad_mask)

    def compact(self) -> DecodingState:
        """Drops leading columns that are padding in every row."""
        real = self.attention_mask.any(dim=0).nonzero()
        start = int(real[0]) if len(real) else 0
        if start == 0:
            return self
        return replace(
            self._map(lambda t: t[..., start:, :], lambda t: t, lambda m: m[:, start:]),
            arena=self.arena,
            arena_start=self.arena_start + start,
        )

    @property
    def repackable_share(self) -> float:
        """Share of the cache's columns that :meth:`repack` would remove: ``1 - longest row / T``."""
        if not self.attention_mask.numel():
            return 0.0
        return 1.0 - float(self.attention_mask.sum(dim=1).max()) / self.length

    def repack(self) -> DecodingState:
        """The same rows with every padding position removed from their middles: each row's
        tokens move, in order, to the right end of a cache as wide as the longest row (in a
        new arena with headroom: the next append writes in place).

        Exact: a key keeps the rotary position it was computed at (positions count tokens,
        not columns), and attention does not depend on where in the cache a key sits.
        """
        real = self.attention_mask.bool()
        lengths = real.sum(dim=1)
        width = int(lengths.max()) if real.numel() else 0
        if width == self.length:
            return self
        # for each row and new column, the old column it takes (padding: any column, masked)
        order = torch.sort(real.long(), dim=1, stable=True).indices[:, self.length - width :]
        mask = torch.arange(width, device=real.device)[None, :] >= (width - lengths)[:, None]

        def gather(tensor: torch.Tensor, out: torch.Tensor) -> None:
            index = order[:, None, :, None].expand(-1, tensor.shape[1], -1, tensor.shape[-1])
            torch.gather(tensor, 2, index.to(tensor.device), out=out)

        return self._into_new_arena(self.batch_size, width, gather, lambda t: t, mask.to(self.attention_mask.dtype))

    def replace_rows(self, rows: Sequence[int], other: DecodingState) -> DecodingState:
        """This state with ``rows`` replaced by the rows of ``other`` (e.g. freshly prefilled prompts)."""
        merged = stack_states([self, other])
        order = list(range(self.batch_size))
        for position, row in enumerate(rows):
            order[row] = self.batch_size + position
        return merged.select(order).compact()

    @torch.inference_mode()
    def graft(self, rows: Sequence[int], grown: DecodingState, since: int) -> DecodingState:
        """This state with ``rows`` taken from ``grown``, another continuation of the same
        ``since`` columns (``grown`` holds just those rows, in order).

        Both continuations end up as wide as the wider one; the narrower rows get padding after
        their last token (attention ignores it; :meth:`repack` removes it). When this state can
        grow in place, the new columns are written into its arena: nothing before ``since`` is
        copied, which makes a feed split into a long part and a short part cost what its new
        tokens cost.
        """
        if not rows:
            return self
        width = max(self.length, grown.length)
        extra = width - self.length
        index = torch.as_tensor(list(rows), dtype=torch.long, device=self.attention_mask.device)
        mask = torch.cat([self.attention_mask, self.attention_mask.new_zeros(self.batch_size, extra)], dim=1)
        mask[index, since:] = 0
        mask[index, since : grown.length] = grown.attention_mask[:, since:].to(mask.dtype)
        hidden = self.hidden.clone()
        hidden[index] = grown.hidden
        outputs = {}
        for name, output in self.head_outputs.items():
            outputs[name] = output.clone()
            outputs[name][index] = grown.head_outputs[name]

        def caches(state: DecodingState) -> dict[str, KVPairs]:
            return {DECODER: state.decoder_kv, **state.head_kv}

        arena = self.arena
        if arena is not None and self.grows_in_place(extra):
            first = self.arena_start
            columns: dict[str, KVPairs] = {}
            for name, pairs in arena.storage.items():
                for storage, new in zip(
                    (t for pair in pairs for t in pair), (t for pair in caches(grown)[name] for t in pair), strict=True
                ):
                    storage[..., first + self.length : first + width, :] = 0
                    storage[index, :, first + since : first + width, :] = 0
                    storage[index, :, first + since : first + grown.length, :] = new[..., since:, :]
                columns[name] = _map_pairs(pairs, lambda t: t[..., first : first + width, :])
            arena.frontier = first + width
            decoder_kv = columns.pop(DECODER)
            return DecodingState(decoder_kv, hidden, mask, columns, outputs, arena, first)

        def widened(old: KVPairs, new: KVPairs) -> KVPairs:
            result = []
            for old_pair, new_pair in zip(old, new, strict=True):
                pair = []
                for tensor, rows_tensor in zip(old_pair, new_pair, strict=True):
                    shape = (*tensor.shape[:-2], extra, tensor.shape[-1])
                    tensor = torch.cat([tensor, tensor.new_zeros(shape)], dim=-2)
                    tensor[index, :, since:, :] = 0
                    tensor[index, :, since : grown.length, :] = rows_tensor[..., since:, :]
                    pair.append(tensor)
                result.append((pair[0], pair[1]))
            return tuple(result)

        return DecodingState(
            decoder_kv=widened(self.decoder_kv, grown.decoder_kv),
            hidden=hidden,
            attention_mask=mask,
            head_kv={name: widened(pairs, grown.head_kv[name]) for name, pairs in self.head_kv.items()},
            head_outputs=outputs,
        )

    def keep_rows_where(self, keep: torch.Tensor, previous: DecodingState) -> DecodingState:
        """``hidden`` and head outputs of ``previous`` for rows where ``keep`` is false ``[B]``.

        After a batched append in which some rows only received padding, those rows keep
        the state of their last real token.
        """
        column = keep.to(self.hidden.device)[:, None]
        return replace(
            self,
            hidden=torch.where(column, self.hidden, previous.hidden),
            head_outputs={
                name: torch.where(column, output, previous.head_outputs[name])
                for name, output in self.head_outputs.items()
            },
        )


def stack_states(states: Sequence[DecodingState]) -> DecodingState:
    """One batch of all rows of ``states`` (left-padded to a common length), in order.

    The states must track the same heads; tree search stacks the states of many nodes
    into one batch to expand them with one decoder step.
    """
    if len(states) == 1:
        return states[0]
    width = max(state.length for state in states)
    padded = [state.left_pad_to(width) for state in states]
    first = padded[0]
    names = set(first.head_kv)
    if any(set(state.head_kv) != names for state in padded):
        raise ValueError("only states that track the same heads can be stacked")

    def cat_pairs(all_pairs: Sequence[KVPairs]) -> KVPairs:
        return tuple(
            (torch.cat([p[i][0] for p in all_pairs]), torch.cat([p[i][1] for p in all_pairs]))
            for i in range(len(all_pairs[0]))
        )

    return DecodingState(
        decoder_kv=cat_pairs([s.decoder_kv for s in padded]),
        hidden=torch.cat([s.hidden for s in padded]),
        attention_mask=torch.cat([s.attention_mask for s in padded]),
        head_kv={name: cat_pairs([s.head_kv[name] for s in padded]) for name in sorted(names)},
        head_outputs={name: torch.cat([s.head_outputs[name] for s in padded]) for name in first.head_outputs},
    )
