"""Rolling episodes out until they end: the loop that drives the stepper's two phases.

A rollout advances ``B`` rows of one :class:`~cola_gym.envs.stepper.EpisodeStepper`
together. At every step ``choose`` picks the action of each row still going, the stepper
books the tokens into the episodes (:meth:`~cola_gym.envs.stepper.EpisodeStepper.decide`),
rows whose episode ended leave the batch, and one decoder call feeds the others
(:meth:`~cola_gym.envs.stepper.EpisodeStepper.feed`). Tree search rolls its leaves out
with it, and episode collection samples whole answers with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cola_gym.envs.episode import Episode
from cola_gym.envs.stepper import EpisodeStepper
from cola_gym.model.decoding import DecodingState

ChooseActions = Callable[[Sequence[int], Sequence[Episode], DecodingState], Sequence[int]]
"""``choose(rows, episodes, state) -> actions``: the action of every row still going.

``rows`` ``[B']`` are their indices among the rollout's rows, ``episodes`` ``[B']`` where
they stand, ``state`` their decoding state (``B'`` rows, in the same order); it returns
``[B']`` actions. It is called once per step, rows in order.
"""


@dataclass(frozen=True)
class EpisodeRollout:
    """One row's rollout.

    Attributes:
        episode: the row's episode where the rollout stopped.
        actions: ``[T]`` the actions taken.
        tokens: every token the decoder consumed after the start, in order (each action's
            feed: its token, or the end of a turn plus the task's message).
        positions: ``[T]`` for each action, how many of ``tokens`` were consumed before it.
        finished: whether the episode is over (else the token limit stopped it).
        reward: the task's reward of the step that ended the episode (0 otherwise).
    """

    episode: Episode
    actions: list[int]
    tokens: list[int]
    positions: list[int]
    finished: bool
    reward: float


def rollout(
    stepper: EpisodeStepper,
    episodes: Sequence[Episode],
    state: DecodingState,
    choose: ChooseActions,
    max_tokens: int,
) -> list[EpisodeRollout]:
    """Advances every row until its episode ends or it has taken ``max_tokens`` actions.

    Args:
        stepper: the stepper of the rows' env.
        episodes: ``[B]`` where each row starts; a row whose episode is already over is
            returned as it is (no actions, reward 0).
        state: the rows' decoding state (``B`` rows, in order).
        choose: picks the actions of the rows still going (see :data:`ChooseActions`).
        max_tokens: actions per row at most.

    Returns:
        ``[B]`` each row's rollout, in order.
    """
    if len(episodes) != state.batch_size:
        raise ValueError(f"got {len(episodes)} episodes for a decoding state of {state.batch_size} rows")
    current = list(episodes)
    actions: list[list[int]] = [[] for _ in episodes]
    tokens: list[list[int]] = [[] for _ in episodes]
    positions: list[list[int]] = [[] for _ in episodes]
    rewards = [0.0] * len(episodes)
    going = [row for row, episode in enumerate(episodes) if not episode.done]
    batch = state.select(going) if going else state
    for taken in range(max_tokens):
        if not going:
            break
        chosen = list(choose(going, [current[row] for row in going], batch))
        booking = stepper.decide([current[row] for row in going], batch, chosen)
        feeds, keep = [], []
        for position, (row, action) in enumerate(zip(going, chosen, strict=True)):
            outcome = booking.outcomes[position]
            current[row] = booking.episodes[position]
            actions[row].append(action)
            positions[row].append(len(tokens[row]))
            if outcome.terminated:
                rewards[row] = outcome.reward
            else:
                feeds.append(list(outcome.feed))
                tokens[row].extend(outcome.feed)
                keep.append(position)
        going = [going[position] for position in keep]
        if going and taken + 1 < max_tokens:  # the last step's feed would serve no one
            batch = stepper.feed(batch.select(keep), feeds)
    return [
        EpisodeRollout(current[row], actions[row], tokens[row], positions[row], current[row].done, rewards[row])
        for row in range(len(episodes))
    ]
