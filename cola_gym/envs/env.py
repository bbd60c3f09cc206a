"""The latent-action env: any :class:`~cola_gym.envs.task.Task` as a Gymnasium env.

Each step the agent picks a latent code ``a_t`` in ``Discrete(K)``; the CoLA world model
turns it into the next token (one cached decoder step, through the batched
:class:`~cola_gym.envs.stepper.EpisodeStepper` at N = 1); the task scores finished turns.
The env holds one :class:`~cola_gym.envs.episode.Episode` value and its decoding state;
every step replaces both, so a snapshot is just the pair.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from cola_gym.envs.episode import Episode, episode_text
from cola_gym.envs.observation import ObservationLayout
from cola_gym.envs.stepper import ActionKind, EpisodeStepper, ObservationKind
from cola_gym.envs.task import Task
from cola_gym.errors import EpisodeOverError, InvalidActionError
from cola_gym.model import CoLAModel, DecoderSettings, DecodingState, shared_model
from cola_gym.model.shared import register_shared_model
from cola_gym.registration import task_class

ModelArg = str | os.PathLike[str] | CoLAModel | None
TaskArg = Task | str


@dataclass(frozen=True)
class EnvSnapshot:
    """An episode value and its decoding state: what :meth:`LatentActionEnv.restore` returns to."""

    episode: Episode
    state: DecodingState


def build_task(task: TaskArg, **task_kwargs: Any) -> Task:
    """A task object: ``task`` itself, or ``"module:Class"`` built with ``task_kwargs``.

    ``data_dir`` is dropped for task classes that read no data files.
    """
    if isinstance(task, Task):
        if task_kwargs:
            raise TypeError(f"unexpected arguments {sorted(task_kwargs)} for an already built task")
        return task
    found = task_class(task)
    if "data_dir" in task_kwargs and "data_dir" not in inspect.signature(found).parameters:
        del task_kwargs["data_dir"]  # a procedural task reads no data files; callers pass it to every id
    return found(**task_kwargs)


class LatentActionEnv(gym.Env[np.ndarray, np.int64]):
    """Text generation driven by latent actions, scored by a task.

    Args:
        task: a :class:`~cola_gym.envs.task.Task`, or ``"module:Class"`` built with the
            remaining keyword arguments (what the registered ids pass).
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
            policy's log-probabilities, the prior that SB3 agents start from; for token actions
            the decoder's next-token log-probabilities, ``[V]`` entries).
        prior_kl_coef: beta of a KL-to-prior penalty: each step's reward gains
            ``beta * log pi_prior(a_t | x_1..t)``; with an entropy bonus of the same beta in
            the algorithm (``ent_coef``), the expected return is penalised by exactly
            ``beta * KL(pi || pi_prior)`` per step (latent actions only).
        render_mode: ``None`` or ``"ansi"``.
        **task_kwargs: arguments of the task class when ``task`` is a string.

    Observation: ``float32[d]`` (``[d + K]`` with the prior): h_t, the decoder's final
    normalised hidden state at the last position, the vector the LM head, the world model
    and the policy read. Its bounds are exact: an RMS-normalised vector has no component
    above ``sqrt(d)`` times the norm's weight. :attr:`observation_layout` says how it
    splits, and the space carries it (:mod:`cola_gym.envs.observation`).

    ``info``: ``text`` (everything generated after the prompt), ``num_tokens``,
    ``is_success``, ``task_index`` and the task's :attr:`~cola_gym.envs.task.Task.info_keys`
    (plus ``prior_log_prob`` with a KL penalty).

    Reset options: ``task_index`` and the task's :attr:`~cola_gym.envs.task.Task.option_keys`.
    A reset that fails (bad options) changes nothing: the running episode goes on.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 10}  # noqa: RUF012 - Gymnasium's convention

    def __init__(
        self,
        task: TaskArg,
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
        **task_kwargs: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if action_kind not in ("latent", "token"):
            raise ValueError(f"action_kind must be 'latent' or 'token', got {action_kind!r}")
        if observation not in ("hidden", "hidden+prior"):
            raise ValueError(f"observation must be 'hidden' or 'hidden+prior', got {observation!r}")
        if prior_kl_coef < 0 or (prior_kl_coef and action_kind == "token"):
            raise ValueError("prior_kl_coef must be >= 0, and applies to latent actions only")
        self.task = build_task(task, **task_kwargs)
        self.render_mode = render_mode
        self.action_kind = action_kind
        self.observation_kind = observation
        self.prior_kl_coef = float(prior_kl_coef)
        self.track_policy = (
            track_policy or (observation == "hidden+prior" and action_kind == "latent") or self.prior_kl_coef > 0
        )
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
        self._init_stepper()
        self._episode_count = 0
        self._episode: Episode | None = None
        self._state: DecodingState | None = None

    def _init_stepper(self) -> None:
        self.stepper = EpisodeStepper(
            self.model,
            self.task,
            action_kind=self.action_kind,
            observation=self.observation_kind,
            track_policy=self.track_policy,
            track_q=self.track_q,
            prior_kl_coef=self.prior_kl_coef,
        )
        self.num_actions = self.stepper.num_actions
        self.action_space = gym.spaces.Discrete(self.num_actions)
        self.observation_space = self.observation_layout.space(self.model.hidden_state_bound().numpy())

    @property
    def observation_layout(self) -> ObservationLayout:
        """How observations split into h_t and the prior (also ``ObservationLayout.of(observation_space)``)."""
        return self.stepper.layout

    # ------------------------------------------------------------ Gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts an episode: the task picks its content, the prompt is prefilled once.

        All or nothing: bad options raise before anything changes.
        """
        checked = self.task.check_options(options)
        rng = seeding.np_random(seed)[0] if seed is not None else copy.deepcopy(self.np_random)
        episode = self.stepper.begin(checked, rng, self._episode_count + 1)
        state = self.stepper.prefill([episode.prompt_ids])
        self._np_random = rng
        if seed is not None:
            self._np_random_seed = seed
        self._episode_count += 1
        self._episode, self._state = episode, state
        return self.stepper.observation(state, 0), self.stepper.info(episode)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Decodes one token under ``action`` (a latent code, or a token in token mode)."""
        code = check_action(action, self.num_actions, self.action_kind)
        if self._state is None or self._episode is None or self._episode.done:
            raise EpisodeOverError(
                "step() called "
                + ("before reset()" if self._state is None else "after the episode ended")
                + "; call reset() to start an episode."
            )
        result = self.stepper.step([self._episode], self._state, [code])
        episode, outcome = result.booking.episodes[0], result.booking.outcomes[0]
        truncated = not outcome.terminated and self.stepper.context_full(result.state.length)
        if truncated:
            episode = dataclasses.replace(episode, done=True)
        self._episode, self._state = episode, result.state
        reward = self.stepper.reward(episode, outcome)
        return (
            self.stepper.observation(result.state, 0),
            reward,
            outcome.terminated,
            truncated,
            self.stepper.info(episode),
        )

    def action_masks(self) -> np.ndarray:
        """``bool[num_actions]``: which actions the task allows now."""
        return self.stepper.action_mask(self._episode)

    def render(self) -> str | None:
        """The prompt and the text so far (``render_mode="ansi"``)."""
        if self.render_mode != "ansi" or self._episode is None:
            return None
        return self._episode.prompt + episode_text(self._episode)

    # ------------------------------------------------------------ episode values
    @property
    def episode(self) -> Episode | None:
        """The current episode value (``None`` before the first reset)."""
        return self._episode

    @property
    def episodes(self) -> list[Episode]:
        """The current episode as a one-row batch (what agents read of envs and vector envs alike)."""
        return [] if self._episode is None else [self._episode]

    @property
    def decoding_state(self) -> DecodingState | None:
        """The current decoding state (``None`` before the first reset)."""
        return self._state

    def snapshot(self) -> EnvSnapshot:
        """The episode's current point; :meth:`restore` returns to it (cheap: no tensor copies)."""
        if self._state is None or self._episode is None:
            raise EpisodeOverError("snapshot() needs an episode: call reset() first.")
        return EnvSnapshot(self._episode, self._state)

    def restore(self, snapshot: EnvSnapshot) -> np.ndarray:
        """Returns the episode, task state included, to ``snapshot``; returns its observation."""
        if self._episode is None or snapshot.episode.number != self._episode.number:
            raise ValueError("this snapshot belongs to another episode; snapshots only restore within their episode.")
        self._episode, self._state = snapshot.episode, snapshot.state
        return self.stepper.observation(snapshot.state, 0)

    @property
    def prompt_text(self) -> str:
        """The episode's prompt as the decoder read it (chat template applied)."""
        return "" if self._episode is None else self._episode.prompt

    @property
    def prompt_ids(self) -> list[int]:
        """The episode's prompt tokens (what the decoder was prefilled with)."""
        return [] if self._episode is None else list(self._episode.prompt_ids)

    # ------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        if not self._picklable:
            raise TypeError(
                "This env holds an in-memory CoLAModel that was not loaded from a path, so it cannot be "
                "pickled. Save the model (model.save_pretrained(dir)) and make the env with model=dir."
            )
        dropped = ("model", "stepper", "_state", "_episode")
        state = {k: v for k, v in self.__dict__.items() if k not in dropped}
        spec = state.get("spec")
        if spec is not None and isinstance(spec.kwargs.get("model"), CoLAModel):
            state["spec"] = dataclasses.replace(spec, kwargs={**spec.kwargs, "model": self._model_ref})
        return state  # a restored env starts between episodes: decoding state is not carried over

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.model = shared_model(self._model_ref, self._settings)
        self._episode, self._state = None, None
        self._init_stepper()


def check_action(action: Any, num_actions: int, action_kind: str) -> int:
    """The action as an int; :class:`InvalidActionError` (nothing changes) if it is not one."""
    value = action
    if isinstance(value, np.ndarray) and value.size == 1 and np.issubdtype(value.dtype, np.integer):
        value = value.reshape(()).item()
    valid = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not valid or not 0 <= int(value) < num_actions:
        kind = "latent code" if action_kind == "latent" else "token id"
        raise InvalidActionError(
            f"action must be an integer {kind} in [0, {num_actions}), got {action!r} "
            f"({type(action).__name__}); nothing was decoded."
        )
    return int(value)


__all__ = ["EnvSnapshot", "LatentActionEnv", "build_task", "check_action"]
