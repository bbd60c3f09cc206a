"""The base latent-action env: owns decoding; tasks implement a few hooks.

Each step the agent picks a latent code ``a_t`` in ``Discrete(K)``; the CoLA world model
turns it into the next token (one cached decoder step). Text is produced in *turns*: a
turn ends at an end-of-sequence token or when the task says the turn is complete. The
task then scores it and either ends the episode or answers with a message, which is
appended to the context as one cached prefill (multi-turn agents).

A task subclasses :class:`LatentActionEnv` and implements:

- :meth:`~LatentActionEnv._begin_episode`: choose the episode's content, return the
  prompt as chat messages;
- :meth:`~LatentActionEnv._end_turn`: score a finished turn (reward, end or continue);
- optionally :meth:`~LatentActionEnv._turn_complete` (stop before an EOS token) and
  :meth:`~LatentActionEnv._initial_info` (task keys of ``info``).

The text side of an episode (:meth:`~LatentActionEnv.begin_episode`,
:meth:`~LatentActionEnv.consume_token`) is separate from decoding, so the batched vector
env (:mod:`cola_gym.envs.vector`) drives many of these envs with one decoder step.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from cola_gym.errors import EpisodeOverError, InvalidActionError
from cola_gym.model import CoLAModel, DecoderSettings, DecodingState, shared_model
from cola_gym.model.shared import register_shared_model

Message = Mapping[str, str]
ModelArg = str | os.PathLike[str] | CoLAModel | None
ActionKind = Literal["latent", "token"]
ObservationKind = Literal["hidden", "hidden+prior"]


@dataclass(frozen=True)
class TurnOutcome:
    """A task's verdict on a finished turn.

    Attributes:
        reward: reward of the step that finished the turn.
        terminated: whether the episode ends here.
        next_message: when the episode goes on, the message (a user turn: the task's
            observation) appended before the model's next turn.
        info: task keys merged into ``info`` from now on.
    """

    reward: float = 0.0
    terminated: bool = True
    next_message: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.terminated and self.next_message is None:
            raise ValueError("a turn that does not end the episode needs a next_message")


@dataclass(frozen=True)
class TokenOutcome:
    """What one generated token did to the episode.

    Attributes:
        feed: tokens the decoder must consume next (the token itself, or the end of the
            turn plus the task's message); empty when the episode ended.
        reward: the task's reward for this step.
        terminated: whether the episode ended.
    """

    feed: tuple[int, ...]
    reward: float
    terminated: bool


@dataclass(frozen=True)
class EpisodeText:
    """The text side of an episode at one point (what :meth:`LatentActionEnv.consume_token` changes)."""

    episode: int
    messages: tuple[Message, ...]
    rendered: str
    transcript: str
    turn_ids: tuple[int, ...]
    num_tokens: int
    task_info: tuple[tuple[str, Any], ...]
    done: bool


@dataclass(frozen=True)
class EnvSnapshot:
    """Everything :meth:`LatentActionEnv.restore` needs; cheap (tensor references only)."""

    text: EpisodeText
    state: DecodingState


class LatentActionEnv(gym.Env[np.ndarray, np.int64]):
    """Text generation driven by latent actions.

    Args:
        model: a :class:`~cola_gym.model.CoLAModel`, a CoLA checkpoint directory, a plain
            decoder (directory or Hub id: fresh heads), or ``None`` for the default model.
            Models are loaded once per process and shared by every env.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"`` for a model loaded by reference.
        quantization: ``"auto"``, ``"none"``, ``"4bit"`` or ``"8bit"`` (see ``DecoderSettings``).
        dtype: decoder compute dtype, ``None`` for the device's default.
        track_policy: keep the CoLA policy's KV cache and logits up to date each step
            (needed by agents that read the prior, e.g. tree search); costs its blocks.
        track_q: likewise for the model's Q-network (tree search's TD checks and values).
        action_kind: ``"latent"`` (``Discrete(K)`` codes through the world model) or
            ``"token"`` (``Discrete(V)``: the token itself, the paper's token-level baseline).
        observation: ``"hidden"`` (h_t) or ``"hidden+prior"`` (h_t followed by the CoLA
            policy's log-probabilities, the prior that SB3 agents start from).
        prior_kl_coef: beta of a KL-to-prior penalty: each step's reward gains
            ``beta * log pi_prior(a_t | x_1..t)``; with an entropy bonus of the same beta in
            the algorithm (``ent_coef``), the expected return is penalised by exactly
            ``beta * KL(pi || pi_prior)`` per step (latent actions only).
        render_mode: ``None`` or ``"ansi"``.

    Observation: ``float32[d]`` (``[d + K]`` with the prior): h_t, the decoder's final
    normalised hidden state at the last position, the vector the LM head, the world model
    and the policy read. Its bounds are exact: an RMS-normalised vector has no component
    above ``sqrt(d)`` times the norm's weight.

    ``info``: ``text`` (everything generated after the prompt), ``num_tokens`` and the
    task's keys (plus ``prior_log_prob`` with a KL penalty).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 10}  # noqa: RUF012 - Gymnasium's convention

    def __init__(
        self,
        model: ModelArg = None,
        *,
        device: str = "auto",
        quantization: str = "auto",
        dtype: str | None = None,
        track_policy: bool = False,
        track_q: bool = False,
        action_kind: ActionKind = "latent",
        observation: ObservationKind = "hidden",
        prior_kl_coef: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if action_kind not in ("latent", "token"):
            raise ValueError(f"action_kind must be 'latent' or 'token', got {action_kind!r}")
        if observation not in ("hidden", "hidden+prior"):
            raise ValueError(f"observation must be 'hidden' or 'hidden+prior', got {observation!r}")
        if prior_kl_coef < 0 or (prior_kl_coef and action_kind == "token"):
            raise ValueError("prior_kl_coef must be >= 0, and applies to latent actions only")
        self.render_mode = render_mode
        self.action_kind = action_kind
        self.observation_kind = observation
        self.prior_kl_coef = float(prior_kl_coef)
        self.track_policy = track_policy or observation == "hidden+prior" or self.prior_kl_coef > 0
        self.track_q = track_q
        self._settings = DecoderSettings(quantization=quantization, device=device, dtype=dtype)  # type: ignore[arg-type]
        if isinstance(model, CoLAModel):
            self.model = model
            self._model_ref = register_shared_model(model, self._settings)
            self._picklable = model.name_or_path is not None
        else:
            self.model = shared_model(model, self._settings)
            self._model_ref = None if model is None else str(model)
            self._picklable = True
        self._init_spaces()
        self._episode = 0
        self._state: DecodingState | None = None
        self._clear_episode()

    def _init_spaces(self) -> None:
        self.num_actions = self.model.num_actions if self.action_kind == "latent" else len(self.model.tokenizer)
        self.action_space = gym.spaces.Discrete(self.num_actions)
        bound = self.model.hidden_state_bound().numpy()
        if self.observation_kind == "hidden+prior":
            # log-probabilities: at most 0, and above -1e4 once clipped (see _observation_of)
            bound = np.concatenate([bound, np.full(self.model.num_actions, 1e4, dtype=np.float32)])
        self.observation_space = gym.spaces.Box(-bound, bound, shape=bound.shape, dtype=np.float32)
        self._stop_ids = self.model.stop_token_ids()
        self._max_positions = getattr(self.model.decoder.config, "max_position_embeddings", None)

    def _clear_episode(self) -> None:
        self._messages: tuple[Message, ...] = ()
        self._prompt = ""
        self._prompt_ids: list[int] = []
        self._rendered = ""
        self._transcript = ""
        self._turn_ids: list[int] = []
        self._num_tokens = 0
        self._task_info: dict[str, Any] = {}
        self._prior_log_prob = 0.0
        self._done = True

    # ------------------------------------------------------------ task hooks
    def _begin_episode(self, options: Mapping[str, Any]) -> Sequence[Message]:
        """Chooses the episode's content (use ``self.np_random``) and returns the prompt messages."""
        raise NotImplementedError

    def _turn_complete(self, turn_text: str) -> bool:
        """Whether the turn is finished before any end-of-sequence token (default: never)."""
        return False

    def _end_turn(self, turn_text: str) -> TurnOutcome:
        """Scores a finished turn; ``turn_text`` excludes the end-of-sequence token."""
        raise NotImplementedError

    def _initial_info(self) -> dict[str, Any]:
        """The task's ``info`` keys at the start of an episode (keep the key set stable)."""
        return {}

    # ------------------------------------------------------------ Gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts an episode: the task picks its content, the prompt is prefilled once."""
        ids = self.begin_episode(seed=seed, options=options)
        self._state = self.model.start(torch.tensor([ids]), track_policy=self.track_policy, track_q=self.track_q)
        return self._observation(), self.current_info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Decodes one token under ``action`` (a latent code, or a token in token mode)."""
        code = self.check_action(action)
        if self._state is None or self._done:
            raise EpisodeOverError(
                "step() called "
                + ("before reset()" if self._state is None else "after the episode ended")
                + "; call reset() to start an episode."
            )
        if self.action_kind == "token":
            token = code
        else:
            token = int(self.model.next_tokens(self._state, torch.tensor([code]))[0])
            self.record_prior(self._state.policy_logits, code)
        outcome = self.consume_token(token)
        if outcome.feed:
            self._state = self.model.append(self._state, torch.tensor([list(outcome.feed)]))
        truncated = not outcome.terminated and self.truncate_if_context_full(self._state.length)
        return self._observation(), self.step_reward(outcome), outcome.terminated, truncated, self.current_info()

    def action_masks(self) -> np.ndarray:
        """``bool[num_actions]``: which actions are allowed now (all of them by default)."""
        return np.ones(self.num_actions, dtype=bool)

    def render(self) -> str | None:
        """The prompt and the text so far (``render_mode="ansi"``)."""
        if self.render_mode != "ansi":
            return None
        return self._prompt + self._transcript + self._decode(self._turn_ids)

    # ------------------------------------------------------------ the text side of an episode
    def begin_episode(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> list[int]:
        """Seeds, lets the task choose the episode, and returns the prompt's token ids."""
        super().reset(seed=seed)
        self._clear_episode()
        self._messages = tuple(dict(m) for m in self._begin_episode(options or {}))
        self._prompt = self._rendered = self._render_messages(self._messages)
        self._task_info = self._initial_info()
        self._done = False
        self._episode += 1
        self._prompt_ids = self._encode(self._prompt, first=True)
        return list(self._prompt_ids)

    def consume_token(self, token: int) -> TokenOutcome:
        """Books a generated token: turn text, turn end, the task's verdict, what to feed next."""
        self._num_tokens += 1
        is_stop = token in self._stop_ids
        if not is_stop:
            self._turn_ids.append(token)
        turn_text = self._decode(self._turn_ids)
        if not is_stop and not self._turn_complete(turn_text):
            return TokenOutcome(feed=(token,), reward=0.0, terminated=False)
        outcome = self._end_turn(turn_text)
        self._task_info.update(outcome.info)
        if outcome.terminated:
            self._done = True
            self._transcript += turn_text
            self._turn_ids = []
            return TokenOutcome(feed=(), reward=float(outcome.reward), terminated=True)
        assert outcome.next_message is not None
        suffix = self._continue_conversation(turn_text, outcome.next_message)
        feed = ([] if is_stop else [token]) + self._encode(suffix)
        return TokenOutcome(feed=tuple(feed), reward=float(outcome.reward), terminated=False)

    def check_action(self, action: Any) -> int:
        """The action as an int; :class:`InvalidActionError` (nothing changes) if it is not one."""
        value = action
        if isinstance(value, np.ndarray) and value.size == 1 and np.issubdtype(value.dtype, np.integer):
            value = value.reshape(())
        if isinstance(value, (bool, np.bool_)) or not self.action_space.contains(value):
            kind = "latent code" if self.action_kind == "latent" else "token id"
            raise InvalidActionError(
                f"action must be an integer {kind} in [0, {self.num_actions}), got {action!r} "
                f"({type(action).__name__}); nothing was decoded."
            )
        return int(value)

    def record_prior(self, policy_logits: torch.Tensor | None, code: int) -> None:
        """Remembers log pi_prior(code) for the KL-to-prior penalty (``policy_logits``: ``[1, K]``)."""
        if self.prior_kl_coef and policy_logits is not None:
            self._prior_log_prob = float(torch.log_softmax(policy_logits[0].float(), -1)[code])

    def step_reward(self, outcome: TokenOutcome) -> float:
        """The task's reward plus the KL-to-prior term."""
        return outcome.reward + self.prior_kl_coef * self._prior_log_prob

    def truncate_if_context_full(self, length: int) -> bool:
        """Ends the episode (truncation) when the decoder's context window is full."""
        if self._max_positions is not None and length >= self._max_positions:
            self._done = True
        return self._done

    def current_info(self) -> dict[str, Any]:
        """The step's ``info``: small and tensor-free (SB3 copies it every step)."""
        info = {"text": self._transcript + self._decode(self._turn_ids), "num_tokens": self._num_tokens}
        info.update(self._task_info)
        if self.prior_kl_coef:
            info["prior_log_prob"] = self._prior_log_prob
        return info

    def observation_of(self, hidden: torch.Tensor, policy_logits: torch.Tensor | None) -> np.ndarray:
        """The observation from h_t ``[d]`` (and the policy logits ``[K]``)."""
        parts = [hidden.detach().to("cpu", torch.float32)]
        if self.observation_kind == "hidden+prior":
            assert policy_logits is not None
            parts.append(torch.log_softmax(policy_logits.detach().float().cpu(), -1).clamp_min(-1e4))
        return torch.cat(parts).numpy()

    # ------------------------------------------------------------ snapshots
    def snapshot(self) -> EnvSnapshot:
        """The episode's current point; :meth:`restore` returns to it (cheap: no tensor copies)."""
        if self._state is None:
            raise EpisodeOverError("snapshot() needs an episode: call reset() first.")
        return EnvSnapshot(text=self.text_snapshot(), state=self._state)

    def restore(self, snapshot: EnvSnapshot) -> np.ndarray:
        """Returns the episode to ``snapshot`` (taken in this episode); returns its observation."""
        self.restore_text(snapshot.text)
        self._state = snapshot.state
        return self._observation()

    def text_snapshot(self) -> EpisodeText:
        """The text side of the episode now (tree search books many branches of one episode)."""
        return EpisodeText(
            episode=self._episode,
            messages=self._messages,
            rendered=self._rendered,
            transcript=self._transcript,
            turn_ids=tuple(self._turn_ids),
            num_tokens=self._num_tokens,
            task_info=tuple(self._task_info.items()),
            done=self._done,
        )

    def restore_text(self, text: EpisodeText) -> None:
        """Returns the text side to ``text`` (taken in this episode)."""
        if text.episode != self._episode:
            raise ValueError("this snapshot belongs to another episode; snapshots only restore within their episode.")
        self._messages = text.messages
        self._rendered = text.rendered
        self._transcript = text.transcript
        self._turn_ids = list(text.turn_ids)
        self._num_tokens = text.num_tokens
        self._task_info = dict(text.task_info)
        self._done = text.done

    @property
    def prompt_text(self) -> str:
        """The episode's prompt as the decoder read it (chat template applied)."""
        return self._prompt

    @property
    def prompt_ids(self) -> list[int]:
        """The episode's prompt tokens (what the decoder was prefilled with)."""
        return list(self._prompt_ids)

    @property
    def decoding_state(self) -> DecodingState | None:
        """The current decoding state (``None`` before the first reset)."""
        return self._state

    # ------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        if not self._picklable:
            raise TypeError(
                "This env holds an in-memory CoLAModel that was not loaded from a path, so it cannot be "
                "pickled. Save the model (model.save_pretrained(dir)) and make the env with model=dir."
            )
        state = {k: v for k, v in self.__dict__.items() if k not in ("model", "_state", "_stop_ids")}
        spec = state.get("spec")
        if spec is not None and isinstance(spec.kwargs.get("model"), CoLAModel):
            state["spec"] = dataclasses.replace(spec, kwargs={**spec.kwargs, "model": self._model_ref})
        # A restored env starts between episodes: decoding state is not carried over.
        state["_done"] = True
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.model = shared_model(self._model_ref, self._settings)
        self._state = None
        self._init_spaces()

    # ------------------------------------------------------------ machinery
    def _observation(self) -> np.ndarray:
        assert self._state is not None
        logits = None if self._state.policy_logits is None else self._state.policy_logits[0]
        return self.observation_of(self._state.hidden[0], logits)

    def _decode(self, ids: Sequence[int]) -> str:
        return self.model.tokenizer.decode(list(ids), skip_special_tokens=True) if ids else ""

    def _encode(self, text: str, first: bool = False) -> list[int]:
        tokenizer = self.model.tokenizer
        add_special = first and not self._has_chat_template()
        return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def _has_chat_template(self) -> bool:
        return getattr(self.model.tokenizer, "chat_template", None) is not None

    def _render_messages(self, messages: Sequence[Message]) -> str:
        """The prompt text of ``messages``: the chat template when the model has one."""
        if self._has_chat_template():
            return str(
                self.model.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
            )
        return "".join(f"{m['content']}\n" for m in messages)

    def _continue_conversation(self, turn_text: str, message: str) -> str:
        """Books the end of the turn and the task's message; returns the text to feed."""
        self._messages = (
            *self._messages,
            {"role": "assistant", "content": turn_text},
            {"role": "user", "content": message},
        )
        consumed = self._rendered + turn_text
        full = self._render_messages(self._messages)
        shared = os.path.commonprefix([consumed, full])  # noqa: RUF071 - a character prefix is meant
        suffix = full[len(shared) :]
        self._transcript += turn_text + suffix
        self._rendered = full
        self._turn_ids = []
        return suffix
