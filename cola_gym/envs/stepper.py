"""The one batched stepper: latent code -> token -> episode -> decoder feed, for N rows at once.

The single env (N = 1), the vector env, the MCTS search model and the re-encoding reference
all advance episodes through :class:`EpisodeStepper`. A step is two phases:

- :meth:`EpisodeStepper.decide`: the world model turns each row's latent code into a token
  (``[B]`` codes over a ``[B]``-row :class:`~cola_gym.model.DecodingState`), and each
  row's :class:`~cola_gym.envs.episode.Episode` consumes its token (:meth:`~EpisodeStepper.consume`,
  where the task's hooks run; the re-encoding reference calls it with its own tokens);
- :meth:`EpisodeStepper.feed`: one decoder call appends every row's feed (its token, or
  the end of a turn plus the task's message); rows with nothing to feed keep their state.

:meth:`EpisodeStepper.step` is both; callers that drop finished rows in between (rollouts)
call the two phases themselves.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch

from cola_gym.envs.episode import Episode, TokenOutcome, consume_token, episode_text, start_episode
from cola_gym.envs.observation import ObservationLayout
from cola_gym.envs.task import TASK_INDEX, Task
from cola_gym.model import CoLAModel, DecodingState
from cola_gym.model.decoding import stack_states
from cola_gym.model.generation import left_pad, right_pad
from cola_gym.text.chat import TextCodec

SPLIT_FEED_WASTE = 32
"""Padded token positions a one-call feed may waste before :meth:`EpisodeStepper.feed` splits it."""

MIN_SHARED_PREFIX = 16
"""Tokens every prompt of a task must share before :meth:`EpisodeStepper.prefill` keeps them
prefilled once (the chat template and system prompt: 24 tokens for GSM8K, 28 for Countdown,
whose instructions follow the problem) and prefills only the tails."""

ActionKind = Literal["latent", "token"]
ObservationKind = Literal["hidden", "hidden+prior"]


@dataclass(frozen=True)
class TokenBooking:
    """The first phase of a step for ``B`` rows: each row's token, booked into its episode.

    Attributes:
        tokens: the token of each row.
        episodes: each row's episode after its token.
        outcomes: what each token did (its ``feed`` is what :meth:`EpisodeStepper.feed` appends).
    """

    tokens: list[int]
    episodes: list[Episode]
    outcomes: list[TokenOutcome]


@dataclass(frozen=True)
class BatchStep:
    """A whole step: the tokens booked and the batch after feeding it."""

    booking: TokenBooking
    state: DecodingState


class EpisodeStepper:
    """Advances episodes of one task on one CoLA model.

    Args:
        model: the CoLA model.
        task: the task whose hooks score the text.
        action_kind: ``"latent"`` codes through the world model, or ``"token"`` ids.
        observation: ``"hidden"`` or ``"hidden+prior"``.
        track_policy: keep the policy's KV cache and logits up to date.
        track_q: likewise for the Q-network.
        prior_kl_coef: beta of the KL-to-prior reward term (latent actions only).
        prompt_cache: how many prompts' prefilled states to keep (least recently used go
            first); 0 turns the cache off. See :meth:`prefill`.

    Attributes:
        layout: how :meth:`observation` lays out h_t and the prior.
    """

    def __init__(
        self,
        model: CoLAModel,
        task: Task,
        *,
        action_kind: ActionKind = "latent",
        observation: ObservationKind = "hidden",
        track_policy: bool = False,
        track_q: bool = False,
        prior_kl_coef: float = 0.0,
        prompt_cache: int = 16,
    ) -> None:
        if isinstance(prompt_cache, bool) or not isinstance(prompt_cache, int) or prompt_cache < 0:
            raise ValueError(f"prompt_cache must be an integer >= 0, got {prompt_cache!r}")
        self.model = model
        self.task = task
        self.action_kind = action_kind
        self.observation_kind = observation
        self.track_policy = track_policy
        self.track_q = track_q
        self.prior_kl_coef = prior_kl_coef
        self.codec = TextCodec(model.tokenizer, model.stop_token_ids())
        self.num_actions = model.num_actions if action_kind == "latent" else len(model.tokenizer)
        self.max_positions: int | None = getattr(model.decoder.config, "max_position_embeddings", None)
        prior = self.num_actions if observation == "hidden+prior" else 0
        self.layout = ObservationLayout(hidden=model.hidden_size, prior=prior)
        self.prompt_cache = prompt_cache
        self._prefilled: OrderedDict[tuple[int, ...], DecodingState] = OrderedDict()
        self._shared: tuple[int, ...] | None = None  # what every prompt seen so far starts with
        self._prompts_seen = 0
        self._prefix: tuple[tuple[int, ...], DecodingState] | None = None  # its prefilled state

    # ------------------------------------------------------------ episodes
    def begin(self, options: Mapping[str, Any], rng: np.random.Generator, number: int) -> Episode:
        """A new episode (``options`` already checked by the task)."""
        return start_episode(self.task, self.codec, options, rng, number)

    def prefill(self, prompts: Sequence[Sequence[int]]) -> DecodingState:
        """The decoding state of ``[B]`` prompts (left padding).

        A prompt is prefilled once: rows with the same prompt (a GRPO group, repeated samples
        of one problem) share one decoder pass, and the states of the last
        :attr:`prompt_cache` prompts are kept, so a prompt seen again (the next episode of a
        group, a re-evaluated problem) costs a copy instead of a prefill. The prompts not kept
        run through the decoder in one batched call. What every prompt of the task starts with
        (at least :data:`MIN_SHARED_PREFIX` tokens: the chat template, the system prompt) is
        prefilled once and kept too, so a new prompt costs only its own tail. Every row's state
        is the one an unshared prefill gives (padding columns aside, which the attention mask
        hides).
        """
        distinct: dict[tuple[int, ...], int] = {}
        rows = [distinct.setdefault(tuple(prompt), len(distinct)) for prompt in prompts]
        missing = [prompt for prompt in distinct if prompt not in self._prefilled]
        fresh: dict[tuple[int, ...], DecodingState] = {}
        if missing:
            if not self.prompt_cache:
                ids, mask = left_pad(missing)
                state = self.model.start(ids, mask, track_policy=self.track_policy, track_q=self.track_q)
                return state if len(distinct) == len(rows) else state.select(rows)
            state = self._prefill_missing(missing)
            # copies: a kept prompt must not keep the whole batch it was prefilled in alive
            fresh = {prompt: state.select([row]).repack().compact().copy() for row, prompt in enumerate(missing)}
        states = [fresh[prompt] if prompt in fresh else self._prefilled[prompt] for prompt in distinct]
        for prompt, state in zip(distinct, states, strict=True):
            self._remember(prompt, state)
        return stack_states(states, pad="right").select(rows)

    def _prefill_missing(self, missing: Sequence[tuple[int, ...]]) -> DecodingState:
        """One decoder pass for ``missing`` prompts: their tails after the task's shared prefix
        (prefilled once), or the whole prompts while no long enough prefix is known."""
        for prompt in missing:  # a tail keeps at least one token
            self._shared = _common_prefix(prompt[:-1] if self._shared is None else self._shared, prompt[:-1])
            self._prompts_seen += 1
        shared = self._shared or ()
        if len(shared) < MIN_SHARED_PREFIX or self._prompts_seen < 2:  # one prompt says nothing of the task
            ids, mask = left_pad(missing)
            return self.model.start(ids, mask, track_policy=self.track_policy, track_q=self.track_q)
        if self._prefix is None or self._prefix[0] != shared:
            prefix = self.model.start(torch.tensor([shared]), track_policy=self.track_policy, track_q=self.track_q)
            self._prefix = (shared, prefix.copy())
        tails, mask = left_pad([prompt[len(shared) :] for prompt in missing])
        return self.model.append(self._prefix[1].select([0] * len(missing)), tails, mask)

    def _remember(self, prompt: tuple[int, ...], state: DecodingState) -> None:
        if not self.prompt_cache:
            return
        self._prefilled[prompt] = state
        self._prefilled.move_to_end(prompt)
        while len(self._prefilled) > self.prompt_cache:
            self._prefilled.popitem(last=False)

    def clear_prompt_cache(self) -> None:
        """Forgets the prefilled prompts (call it after changing the model's weights in place)."""
        self._prefilled.clear()
        self._shared = self._prefix = None
        self._prompts_seen = 0

    # ------------------------------------------------------------ the step
    def decide(self, episodes: Sequence[Episode], state: DecodingState, actions: Sequence[int]) -> TokenBooking:
        """Tokens for ``[B]`` actions on the ``[B]``-row ``state``; each episode consumes its token."""
        return self.consume(episodes, self.tokens(state, actions), self._log_priors(state, actions))

    def tokens(self, state: DecodingState, actions: Sequence[int]) -> list[int]:
        """The token of each row's action: the world model's choice (or the action itself for tokens)."""
        return self._token_tensor(state, actions).tolist()

    def _token_tensor(self, state: DecodingState, actions: Sequence[int]) -> torch.Tensor:
        """``[B]`` tokens, on the model's device for latent actions."""
        if self.action_kind == "token":
            return torch.tensor([int(a) for a in actions])
        return self.model.next_tokens(state, torch.tensor(list(actions)))

    def consume(
        self, episodes: Sequence[Episode], tokens: Sequence[int], log_priors: Sequence[float] | None = None
    ) -> TokenBooking:
        """Each episode books its token (the task's hooks run here); pure: returns new episodes."""
        new_episodes, outcomes = [], []
        for row, (episode, token) in enumerate(zip(episodes, tokens, strict=True)):
            if log_priors is not None:
                episode = replace(episode, prior_log_prob=float(log_priors[row]))
            episode, outcome = consume_token(self.task, self.codec, episode, int(token))
            new_episodes.append(episode)
            outcomes.append(outcome)
        return TokenBooking(list(tokens), new_episodes, outcomes)

    def feed(self, state: DecodingState, feeds: Sequence[Sequence[int]]) -> DecodingState:
        """Appends each row's tokens at the row's own end; rows with none keep their state.

        The cache is ragged (:meth:`~cola_gym.model.CoLAModel.append_ragged`): a row fed a
        turn's answer does not widen the other rows with padding, so the cache stays as wide as
        its longest row. Usually one decoder call. When a few rows have a long feed (the end of
        a turn and the task's message) and the rest one token, running every row to the longest
        feed would compute padding: past :data:`SPLIT_FEED_WASTE` padded positions, the short
        feeds go in one call on the whole batch and the long ones in a second on their rows only.
        """
        lengths = [len(f) for f in feeds]
        longest = max(lengths, default=0)
        long_rows = [row for row, n in enumerate(lengths) if n > 1]
        short_rows = [row for row, n in enumerate(lengths) if n <= 1]
        if not long_rows or not short_rows or len(short_rows) * (longest - 1) < SPLIT_FEED_WASTE:
            return self._append(state, feeds)
        fed = self._append(state, [feed if len(feed) <= 1 else () for feed in feeds])
        return self._append(fed, [feeds[row] for row in long_rows], rows=long_rows)

    def _append(
        self, state: DecodingState, feeds: Sequence[Sequence[int]], rows: Sequence[int] | None = None
    ) -> DecodingState:
        """One decoder call for the feeds of ``rows`` (default: all), each at its row's end."""
        if not any(feeds):
            return state
        ids, lengths = right_pad(feeds)
        return self.model.append_ragged(state, ids, lengths, rows)

    def step(self, episodes: Sequence[Episode], state: DecodingState, actions: Sequence[int]) -> BatchStep:
        """:meth:`decide` then :meth:`feed` for every row.

        When every row feeds just its new token (no turn ended), the tokens go back into the
        decoder from where they were made: no copy to and from the device, no padding mask.
        """
        produced = self._token_tensor(state, actions)
        tokens = produced.tolist()
        booking = self.consume(episodes, tokens, self._log_priors(state, actions))
        feeds = [o.feed for o in booking.outcomes]
        if all(len(feed) == 1 and feed[0] == token for feed, token in zip(feeds, tokens, strict=True)):
            return BatchStep(booking, self.model.append_ragged(state, produced[:, None]))
        return BatchStep(booking, self.feed(state, feeds))

    def reward(self, episode: Episode, outcome: TokenOutcome) -> float:
        """The task's reward plus the KL-to-prior term."""
        return outcome.reward + self.prior_kl_coef * episode.prior_log_prob

    def context_full(self, length: int) -> bool:
        """Whether a row of this many positions has filled the decoder's context window."""
        return self.max_positions is not None and length >= self.max_positions

    # ------------------------------------------------------------ what agents see
    def observation(self, state: DecodingState, row: int) -> np.ndarray:
        """Row ``row``'s observation ``[layout.size]`` (see :meth:`observations`)."""
        return self.observations(state, [row])[0]

    def observations(self, state: DecodingState, rows: Sequence[int] | None = None) -> np.ndarray:
        """Observations ``[R, layout.size]`` of ``rows`` (default: all), as :attr:`layout` lays
        them out: h_t ``[d]``, then the prior's log-probabilities (the policy's ``[K]``, or the
        decoder's ``[V]`` for token actions). One batched call and one copy to the host."""
        picked = state if rows is None else state.select(rows)
        prior = None
        if self.layout.prior:
            if self.action_kind == "token":  # the decoder's own next-token distribution
                with torch.no_grad():
                    logits = self.model.decoder_logits(picked.hidden)
            else:
                assert picked.policy_logits is not None
                logits = picked.policy_logits
            prior = torch.log_softmax(logits.detach().float(), -1)
        return self.layout.join(picked.hidden.detach().float(), prior).to("cpu").numpy()

    def info(self, episode: Episode) -> dict[str, Any]:
        """The step's ``info``: small and tensor-free (SB3 copies it every step)."""
        info: dict[str, Any] = {
            "text": episode_text(episode),
            "num_tokens": episode.num_tokens,
            "is_success": episode.is_success,
            TASK_INDEX: episode.task_index,
        }
        info.update(self.task.info(episode.task_state))
        anchor = self.task.anchor(episode.task_state)
        if anchor is not None:  # the world state the next turn starts from, and which turn that is
            info["anchor"], info["turn"] = anchor, episode.turns
        if self.prior_kl_coef:
            info["prior_log_prob"] = episode.prior_log_prob
        return info

    def action_mask(self, episode: Episode | None) -> np.ndarray:
        """``bool[num_actions]``: the actions the task allows now."""
        mask = None if episode is None else self.task.action_mask(episode.task_state, self.num_actions)
        return np.ones(self.num_actions, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)

    def _log_priors(self, state: DecodingState, actions: Sequence[int]) -> list[float] | None:
        if not self.prior_kl_coef or self.action_kind != "latent" or state.policy_logits is None:
            return None
        log_probs = torch.log_softmax(state.policy_logits.float(), -1)
        return log_probs[torch.arange(len(actions)), torch.tensor(list(actions))].tolist()


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The longest sequence both ``a`` and ``b`` start with."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return a[:index]
    return a[: min(len(a), len(b))]
