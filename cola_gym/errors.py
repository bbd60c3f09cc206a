"""Exceptions raised by cola-gym.

Every error says what was wrong and how to fix it. Each class also derives from the
built-in (or Gymnasium) exception a caller would naturally catch, so
``except FileNotFoundError`` or ``except gymnasium.error.InvalidAction`` keep working.
"""

from __future__ import annotations

import gymnasium as gym


class CoLAError(Exception):
    """Base class of every error raised by cola-gym."""


class ModelNotFoundError(CoLAError, FileNotFoundError):
    """A model or decoder path does not exist and is not a reachable Hub id."""


class UnsupportedDecoderError(CoLAError, ValueError):
    """The decoder is not a Llama-family causal LM that CoLA can wrap."""


class CheckpointError(CoLAError, ValueError):
    """A CoLA checkpoint is missing files, corrupt, or does not fit the model."""


class DataNotFoundError(CoLAError, FileNotFoundError):
    """No data source (argument, environment variable or Hub) could provide a data set."""


class DataFormatError(CoLAError, ValueError):
    """A data file has a malformed row."""


class InvalidActionError(gym.error.InvalidAction, CoLAError, ValueError):
    """An action outside the env's action space."""


class EpisodeOverError(gym.error.ResetNeeded, CoLAError, RuntimeError):
    """``step()`` was called before ``reset()`` or after the episode ended."""
