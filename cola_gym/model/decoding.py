"""Immutable decoding state: KV caches of the decoder and the tracked heads, and the last ``h``.

A :class:`DecodingState` holds views of its key/value tensors whose unmasked positions nothing
ever writes to again, which makes a state its own snapshot: restoring it costs nothing, and any number of
branches (tree search) can grow from one state.

The views live in a :class:`KVArena`, storage with room to grow: appending to the newest
state of a lineage writes the new positions in place (no per-step concatenation of the
whole cache, as Hugging Face's dynamic cache does). Only the state made by the arena's last
write can write again: any other branch grown from an older state copies its state into an
arena of its own (copy-on-branch).

Rows need not end at the same column: a *ragged* append (:func:`ragged_cache`) writes each row's
new tokens at that row's own end, so a row that is fed a long message does not widen every other
row with padding. Attention and rotary positions read the mask, never a column's place.

Besides the decoder, a state can *track* heads that read ``h`` with their own KV cache
(the CoLA policy, the Q-network): their outputs at the last position are kept up to date.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, cast

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
        version: bumped by every write; only the state made by the last write (whose
            ``arena_version`` equals it) may write again.
    """

    storage: dict[str, KVPairs]
    version: int = 0

    def written(self) -> int:
        """Records a write; returns the new version."""
        self.version += 1
        return self.version

    def views(self, name: str, start: int, width: int) -> KVPairs:
        """Cache ``name``'s storage columns ``[start, start + width)``, per layer (views, not copies)."""
        return tuple(
            (k[..., start : start + width, :], v[..., start : start + width, :]) for k, v in self.storage[name]
        )

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
            self.storage = (key_states.new_zeros(shape), value_states.new_zeros(shape))
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


class _RaggedLayer(DynamicLayer):
    """A cache layer that writes row ``r``'s new position ``j`` at storage column ``columns[r, j]``.

    ``rows`` (``None``: all) are the storage rows the batch fed to the decoder stands for; the
    keys it attends to are storage columns ``[start, start + width)`` of those rows (a view when
    they are all rows). Padding positions (``real`` false) are written as zeros.
    """

    def __init__(
        self,
        storage: KVPair,
        rows: torch.Tensor | None,
        columns: torch.Tensor,
        real: torch.Tensor,
        start: int,
        width: int,
    ) -> None:
        super().__init__()
        self.storage, self.rows, self.columns, self.start, self.width = storage, rows, columns, start, width
        self.real = real[:, None, :, None]
        self.lazy_initialization(*storage)
        self.keys, self.values = (tensor[..., start : start + width, :] for tensor in storage)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, new_positions, _ = key_states.shape
        rows = torch.arange(batch, device=key_states.device) if self.rows is None else self.rows
        row_index = rows[:, None].expand(batch, new_positions)
        for store, states in zip(self.storage, (key_states, value_states), strict=True):
            store[row_index, :, self.columns] = torch.where(self.real, states, 0).transpose(1, 2)
        keys, values = (tensor[..., self.start : self.start + self.width, :] for tensor in self.storage)
        if self.rows is not None:
            keys, values = keys.index_select(0, self.rows), values.index_select(0, self.rows)
        return keys, values


def ragged_cache(
    storage: KVPairs, rows: torch.Tensor | None, columns: torch.Tensor, real: torch.Tensor, start: int, width: int
) -> DynamicCache:
    """A cache over storage columns ``[start, start + width)`` that writes the new position ``j``
    of fed row ``r`` (storage row ``rows[r]``) at column ``columns[r, j]`` (see :class:`_RaggedLayer`)."""
    cache = DynamicCache()
    for pair in storage:
        cache.layers.append(_RaggedLayer(pair, rows, columns, real, start, width))
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
        arena_version: the arena's version when this state was made (it may write to the
            arena while the two agree).
    """

    decoder_kv: KVPairs
    hidden: torch.Tensor
    attention_mask: torch.Tensor
    head_kv: Mapping[str, KVPairs] = field(default_factory=dict)
    head_outputs: Mapping[str, torch.Tensor] = field(default_factory=dict)
    arena: KVArena | None = None
    arena_start: int = 0
    arena_version: int = 0

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

    @property
    def ends(self) -> torch.Tensor:
        """``[B]`` the column after each row's last token (0 for a row with none)."""
        columns = torch.arange(1, self.length + 1, device=self.attention_mask.device)
        return (self.attention_mask.bool() * columns).amax(dim=1) if self.length else columns.new_zeros(self.batch_size)

    def grows_in_place(self, new_positions: int) -> bool:
        """Whether appending ``new_positions`` writes into this state's arena (no copy)."""
        return self.writes_in_place(self.length + new_positions)

    def writes_in_place(self, columns: int) -> bool:
        """Whether this state may write its arena's columns up to ``columns`` (counted from its
        first column) in place: no later state wrote to the arena, and it has the room."""
        arena = self.arena
        return (
            KV_IN_PLACE
            and arena is not None
            and arena.version == self.arena_version
            and self.arena_start + columns <= arena.capacity
        )

    def with_room(self, columns: int) -> DecodingState:
        """This state, or a copy of it in an arena of its own, that can write ``columns`` columns in place."""
        if self.writes_in_place(columns):
            return self

        def fill(tensor: torch.Tensor, out: torch.Tensor) -> None:
            out.copy_(tensor)

        return self._into_new_arena(self.batch_size, self.length, fill, lambda t: t, self.attention_mask, columns)

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
        room: int = 0,
    ) -> DecodingState:
        """A state of ``batch`` rows and ``width`` columns whose caches ``fill(source, out)``
        writes straight into a new arena with headroom (at least ``room`` columns), so its next
        append writes in place (no second copy); ``rows`` maps the per-row outputs."""
        capacity = max(width, room) + (max(width, MIN_HEADROOM) if KV_IN_PLACE else 0)
        storage: dict[str, KVPairs] = {}
        views: dict[str, KVPairs] = {}
        for name, pairs in {DECODER: self.decoder_kv, **self.head_kv}.items():
            stored, viewed = [], []
            for pair in pairs:
                columns = []
                for tensor in pair:
                    store = tensor.new_zeros((batch, *tensor.shape[1:-2], capacity, tensor.shape[-1]))
                    fill(tensor, store[..., :width, :])
                    columns.append(store)
                stored.append((columns[0], columns[1]))
                viewed.append((columns[0][..., :width, :], columns[1][..., :width, :]))
            storage[name], views[name] = tuple(stored), tuple(viewed)
        decoder_kv = views.pop(DECODER)
        outputs = {name: rows(output) for name, output in self.head_outputs.items()}
        return DecodingState(decoder_kv, rows(self.hidden), mask, views, outputs, KVArena(storage), 0)

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

    def pad_to(self, width: int, side: Literal["left", "right"]) -> DecodingState:
        """The same state with ``width - T`` padding columns added on the ``side``."""
        extra = width - self.length
        if extra <= 0:
            return self

        def join(padding: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
            parts = [padding, tensor] if side == "left" else [tensor, padding]
            return torch.cat(parts, dim=-2 if tensor.dim() > 2 else 1)

        def pad(tensor: torch.Tensor) -> torch.Tensor:
            return join(tensor.new_zeros((*tensor.shape[:-2], extra, tensor.shape[-1])), tensor)

        def pad_mask(mask: torch.Tensor) -> torch.Tensor:
            return join(mask.new_zeros(mask.shape[0], extra), mask)

        return self._map(pad, lambda t: t, pad_mask)

    def compact(self) -> DecodingState:
        """Drops leading and trailing columns that are padding in every row."""
        real = self.attention_mask.any(dim=0).nonzero()
        start, stop = (int(real[0]), int(real[-1]) + 1) if len(real) else (0, self.length)
        if start == 0 and stop == self.length:
            return self
        return replace(
            self._map(lambda t: t[..., start:stop, :], lambda t: t, lambda m: m[:, start:stop]),
            arena=self.arena,
            arena_start=self.arena_start + start,
            arena_version=self.arena_version,
        )

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

    def replace_rows(self, rows: Sequence[int], other: DecodingState, *, overwrite: bool = False) -> DecodingState:
        """This state with ``rows`` replaced by the rows of ``other`` (e.g. freshly prefilled prompts).

        ``overwrite=True`` writes ``other``'s caches into this state's arena, over the replaced
        rows' columns, when this state may write there: no copy of the other rows' caches (the
        new state's caches are views of the same storage). This state, and every older state of
        its arena, must not be read afterwards: the vector env's autoreset, which drops its old
        state, is what it is for. Otherwise (or when the arena cannot take it) the rows are
        copied into a new state and this one stays as it was.
        """
        if overwrite and len(rows) == other.batch_size and set(other.head_kv) == set(self.head_kv):
            width = max(self.length, other.length)
            if rows and self.writes_in_place(width):
                return self._overwrite_rows(list(rows), other, width)
        merged = stack_states([self, other], pad="right")
        order = list(range(self.batch_size))
        for position, row in enumerate(rows):
            order[row] = self.batch_size + position
        return merged.select(order).compact()

    @torch.inference_mode()
    def _overwrite_rows(self, rows: list[int], other: DecodingState, width: int) -> DecodingState:
        """:meth:`replace_rows` in place: ``other``'s rows written over ``rows`` in this state's arena."""
        arena = self.arena
        assert arena is not None
        start, stop = self.arena_start, self.arena_start + other.length
        index = torch.as_tensor(rows, dtype=torch.long, device=self.attention_mask.device)
        for name, pairs in {DECODER: other.decoder_kv, **other.head_kv}.items():
            for stored, new in zip(arena.storage[name], pairs, strict=True):
                for tensor, written in zip(stored, new, strict=True):
                    tensor[index.to(tensor.device), ..., start:stop, :] = written.to(tensor.dtype)
        mask = self.attention_mask.new_zeros(self.batch_size, width)
        mask[:, : self.length] = self.attention_mask
        mask[index] = 0
        mask[index, : other.length] = other.attention_mask.to(mask.dtype)
        used = mask.bool().any(dim=0).nonzero()
        width = int(used[-1]) + 1 if len(used) else width  # trailing columns no row uses are dropped

        def replaced(mine: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
            out = mine.clone()
            out[index] = theirs.to(out.dtype)
            return out

        return DecodingState(
            decoder_kv=arena.views(DECODER, start, width),
            hidden=replaced(self.hidden, other.hidden),
            attention_mask=mask[:, :width],
            head_kv={name: arena.views(name, start, width) for name in self.head_kv},
            head_outputs={
                name: replaced(output, other.head_outputs[name]) for name, output in self.head_outputs.items()
            },
            arena=arena,
            arena_start=start,
            arena_version=arena.written(),
        )


def stack_states(states: Sequence[DecodingState], pad: Literal["left", "right"] = "left") -> DecodingState:
    """One batch of all rows of ``states`` (padded on the ``pad`` side to a common length), in order.

    Left padding makes every row end at the last column (as :meth:`CoLAModel.append` expects);
    right padding leaves each row where it was (ragged appends write at each row's own end).

    The states must track the same heads; tree search stacks the states of many nodes
    into one batch to expand them with one decoder step.
    """
    if len(states) == 1:
        return states[0]
    width = max(state.length for state in states)
    padded = [state.pad_to(width, pad) for state in states]
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
