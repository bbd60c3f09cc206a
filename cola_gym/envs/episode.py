"""The episode value: the text of an episode and its task's state, as one immutable object.

Text is produced in *turns*: a turn ends at an end-of-sequence token or when the task says
it is complete; the task then scores it and either ends the episode or answers with a
message, which is appended to the conversation (and fed to the decoder as one prefill).

:func:`start_episode` and :func:`consume_token` are pure: they return new
:class:`Episode` values and never change the old ones, so a snapshot of an episode is
just the value (plus its decoding state), and search can branch any task from it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cola_gym.envs.task import Task
from cola_gym.text.chat import Message, TextCodec


@dataclass(frozen=True)
class Episode:
    """One episode at one point: everything but the decoder's KV caches.

    Attributes:
        number: which episode of its env this is (snapshots restore only within it).
        task_index: ``info["task_index"]`` (-1 for a task posed by hand).
        task_state: the task's own immutable state.
        messages: the conversation so far (prompt, finished turns, the task's messages).
        prompt: the prompt as the decoder read it (chat template applied).
        prompt_ids: its tokens.
        rendered: the conversation's text up to the current turn.
        transcript: everything generated or appended after the prompt, up to the current turn.
        turn_ids: the tokens of the current turn.
        turn_text: their text (special tokens left out).
        turn_bytes: their bytes, for tokenizers that decode byte by byte (else empty): the
            next token's text costs one token's work (:meth:`TextCodec.extend`).
        num_tokens: tokens generated so far (env steps).
        positions: tokens the decoder has read (the prompt and everything fed after it).
        turns: turns finished so far.
        is_success: the task's verdict so far.
        done: whether the episode has ended.
        prior_log_prob: log pi_prior of the last latent action (for the KL-to-prior term).
    """

    number: int
    task_index: int
    task_state: Any
    messages: tuple[Message, ...]
    prompt: str
    prompt_ids: tuple[int, ...]
    rendered: str
    transcript: str = ""
    turn_ids: tuple[int, ...] = ()
    turn_text: str = ""
    turn_bytes: bytes = b""
    num_tokens: int = 0
    positions: int = 0
    turns: int = 0
    is_success: bool = False
    done: bool = False
    prior_log_prob: float = 0.0


@dataclass(frozen=True)
class TokenOutcome:
    """What one generated token did to an episode.

    Attributes:
        feed: tokens the decoder must consume next (the token itself, or the end of the
            turn plus the task's message); empty when the episode ended.
        reward: the task's reward for this step.
        terminated: whether the episode ended.
    """

    feed: tuple[int, ...]
    reward: float
    terminated: bool


def start_episode(
    task: Task, codec: TextCodec, options: Mapping[str, Any], rng: np.random.Generator, number: int
) -> Episode:
    """A new episode of ``task`` from checked ``options`` (see :meth:`Task.check_options`)."""
    start = task.begin(options, rng)
    messages = tuple(dict(m) for m in start.messages)
    prompt = codec.render(messages)
    prompt_ids = tuple(codec.encode(prompt, first=True))
    return Episode(
        number=number,
        task_index=start.index,
        task_state=start.state,
        messages=messages,
        prompt=prompt,
        prompt_ids=prompt_ids,
        rendered=prompt,
        positions=len(prompt_ids),
    )


def consume_token(task: Task, codec: TextCodec, episode: Episode, token: int) -> tuple[Episode, TokenOutcome]:
    """Books a generated token: turn text, turn end, the task's verdict, what to feed next."""
    num_tokens = episode.num_tokens + 1
    is_stop = token in codec.stop_ids
    if is_stop:
        turn_ids, turn_text, turn_bytes = episode.turn_ids, episode.turn_text, episode.turn_bytes
    else:
        turn_ids = (*episode.turn_ids, token)
        turn_bytes, turn_text = codec.extend(episode.turn_bytes, turn_ids)
    if not is_stop and not task.turn_complete(episode.task_state, turn_text):
        going = dataclasses.replace(
            episode,
            turn_ids=turn_ids,
            turn_text=turn_text,
            turn_bytes=turn_bytes,
            num_tokens=num_tokens,
            positions=episode.positions + 1,
        )
        return going, TokenOutcome((token,), 0.0, False)
    verdict = task.end_turn(episode.task_state, turn_text)
    success = verdict.success
    if success is None:
        success = episode.is_success or (verdict.terminated and verdict.reward > 0)
    ended = dataclasses.replace(
        episode,
        task_state=verdict.state,
        turn_ids=(),
        turn_text="",
        turn_bytes=b"",
        num_tokens=num_tokens,
        turns=episode.turns + 1,
        is_success=bool(success),
    )
    if verdict.terminated:
        final = dataclasses.replace(ended, transcript=episode.transcript + turn_text, done=True)
        return final, TokenOutcome((), float(verdict.reward), True)
    assert verdict.next_message is not None
    messages = (
        *episode.messages,
        {"role": "assistant", "content": turn_text},
        {"role": "user", "content": verdict.next_message},
    )
    full = codec.render(messages)
    shared = os.path.commonprefix([episode.rendered + turn_text, full])  # noqa: RUF071 - a character prefix
    suffix = full[len(shared) :]
    feed = ([] if is_stop else [token]) + codec.encode(suffix)
    going_on = dataclasses.replace(
        ended,
        messages=messages,
        rendered=full,
        transcript=episode.transcript + turn_text + suffix,
        positions=episode.positions + len(feed),
    )
    return going_on, TokenOutcome(tuple(feed), float(verdict.reward), False)


def episode_text(episode: Episode) -> str:
    """Everything generated or appended after the prompt, the current turn included."""
    return episode.transcript + episode.turn_text
