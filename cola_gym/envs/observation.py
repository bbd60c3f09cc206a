"""The observation layout: how every cola-gym observation splits, written once.

An observation is one ``float32`` vector of ``size = hidden + prior`` entries (a batch of
them is ``[..., size]``), laid out as::

    [ h_t  (hidden entries)  ‖  max(log pi_prior(. | x_1..t), PRIOR_FLOOR)  (prior entries) ]

- ``h_t``, ``[d]``: the decoder's final normalised hidden state at the last position, the
  vector the LM head, the world model and the CoLA policy read. Its bounds are exact (see
  :meth:`~cola_gym.model.CoLAModel.hidden_state_bound`).
- the prior, ``[K]``, only with ``observation="hidden+prior"`` (``prior = 0`` otherwise):
  the CoLA policy's log-probabilities over the ``K`` latent codes, or for token twins the
  decoder's next-token log-probabilities over the ``V`` tokens (``prior`` then equals the
  action count). Entries are clipped below at :data:`PRIOR_FLOOR`, so every one is finite;
  the space bounds them by ``±|PRIOR_FLOOR|``.

The env publishes the layout *with* its space: ``observation_space`` is an
:class:`ObservationBox`, a :class:`gymnasium.spaces.Box` that carries ``.layout``, so code
that only gets the space (SB3 policies, algorithms) reads it back with
:meth:`ObservationLayout.of`; a plain ``Box`` reads as hidden entries only. Readers take
the parts with :meth:`ObservationLayout.split` and never slice observations by position.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

PRIOR_FLOOR = -1e4
"""The prior's log-probabilities are clipped below here (finite observations and bounds)."""

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class ObservationLayout:
    """How an observation's last axis splits: ``hidden`` entries of h_t, then ``prior`` entries.

    Attributes:
        hidden: d, the entries of h_t.
        prior: the prior's log-probabilities (K latent codes, or V tokens for token twins);
            0 when the observation carries no prior.
    """

    hidden: int
    prior: int = 0

    prior_floor: ClassVar[float] = PRIOR_FLOOR
    """Where the prior's log-probabilities are clipped."""

    def __post_init__(self) -> None:
        for name, value, minimum in (("hidden", self.hidden, 1), ("prior", self.prior, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

    @property
    def size(self) -> int:
        """Entries of one observation: ``hidden + prior``."""
        return self.hidden + self.prior

    def split(self, observation: ArrayT) -> tuple[ArrayT, ArrayT | None]:
        """``(h [..., hidden], prior [..., prior] or None)`` of observations ``[..., size]``.

        Works on numpy arrays and torch tensors alike; the parts are views, not copies.

        Raises:
            ValueError: the last axis does not have :attr:`size` entries.
        """
        self._check_last_axis(observation, self.size, "observation")
        hidden = observation[..., : self.hidden]
        return hidden, (observation[..., self.hidden :] if self.prior else None)

    def join(self, hidden: torch.Tensor, prior_log_probs: torch.Tensor | None = None) -> torch.Tensor:
        """The observations ``[..., size]`` of h ``[..., hidden]`` and the prior's log-probabilities.

        Always a new tensor: an observation never shares memory with the decoding state.

        Args:
            hidden: h_t, ``[..., hidden]``.
            prior_log_probs: ``[..., prior]``, clipped here at :attr:`prior_floor`; ``None``
                exactly when the layout has no prior.
        """
        self._check_last_axis(hidden, self.hidden, "h_t")
        if (prior_log_probs is None) != (self.prior == 0):
            raise ValueError(f"this layout has {self.prior} prior entries: give the prior exactly when it has some")
        parts = [hidden]
        if prior_log_probs is not None:
            self._check_last_axis(prior_log_probs, self.prior, "the prior")
            parts.append(prior_log_probs.clamp_min(self.prior_floor))
        return torch.cat(parts, dim=-1)

    def space(self, hidden_bound: np.ndarray) -> ObservationBox:
        """The observation space: h_t within ``±hidden_bound [hidden]``, the prior within ``±|prior_floor|``."""
        self._check_last_axis(hidden_bound, self.hidden, "the hidden-state bound")
        prior_bound = np.full(self.prior, -self.prior_floor, dtype=np.float32)
        bound = np.concatenate([np.asarray(hidden_bound, dtype=np.float32), prior_bound])
        return ObservationBox(-bound, bound, self)

    @classmethod
    def of(cls, space: gym.Space[Any]) -> ObservationLayout:
        """The layout a space publishes; a plain ``Box`` is read as hidden entries only.

        Raises:
            TypeError: ``space`` is not a ``Box`` with at least one axis.
        """
        if isinstance(space, ObservationBox):
            return space.layout
        if isinstance(space, gym.spaces.Box) and space.shape:
            return cls(hidden=int(space.shape[-1]))
        raise TypeError(f"observations must be a Box of shape [..., size] to have a layout, got {space}")

    @staticmethod
    def _check_last_axis(array: np.ndarray | torch.Tensor, entries: int, what: str) -> None:
        shape = tuple(array.shape)
        if not shape or shape[-1] != entries:
            raise ValueError(f"{what} must have {entries} entries on its last axis, got shape {shape}")


class ObservationBox(gym.spaces.Box):
    """A ``float32`` ``Box`` whose last axis splits as its :attr:`layout` says.

    Args:
        low: lower bounds ``[..., layout.size]``.
        high: upper bounds, the same shape.
        layout: how the last axis splits.
        seed: the space's seed (an int or a generator), as ``Box``.
    """

    def __init__(
        self,
        low: np.ndarray,
        high: np.ndarray,
        layout: ObservationLayout,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(low, high, dtype=np.float32, seed=seed)
        if not self.shape or self.shape[-1] != layout.size:
            raise ValueError(f"a space of shape {self.shape} cannot hold {layout} (its last axis has {layout.size})")
        self.layout = layout

    def __eq__(self, other: object, /) -> bool:
        """Equal bounds, shape and layout (a plain ``Box`` has the layout of hidden entries only)."""
        if not (isinstance(other, gym.spaces.Box) and super().__eq__(other)):
            return False
        return ObservationLayout.of(other) == self.layout

    def __ne__(self, other: object, /) -> bool:
        """Not :meth:`__eq__` (defined here too, so that ``Box(...) != self`` asks this class)."""
        return not self == other

    def __repr__(self) -> str:
        return f"ObservationBox({super().__repr__()}, {self.layout})"


@batch_space.register(ObservationBox)
def _batch_observation_box(space: ObservationBox, n: int = 1) -> ObservationBox:
    """Vector envs' ``observation_space``: ``n`` rows of the same layout (it describes the last axis)."""
    repeats = (n,) + (1,) * space.low.ndim
    low, high = np.tile(space.low, repeats), np.tile(space.high, repeats)
    return ObservationBox(low, high, space.layout, seed=copy.deepcopy(space.np_random))


__all__ = ["PRIOR_FLOOR", "ObservationBox", "ObservationLayout"]
