"""The agent protocol, and the simple agents: uniform random and the CoLA policy prior.

Every agent predicts as Stable-Baselines3 models do: ``predict(observation, state,
episode_start, deterministic) -> (actions, state)``, for one observation ``[d]`` or a batch
``[N, d]``. Agents that read more than the observation (the prior's KV-cached logits,
action masks, tree search over the decoding state) are *bound* to the env they act in
first: ``agent.bind(env)`` with a cola-gym env or vector env (wrappers and the SB3 adapter
allowed). Agents that need the env made a certain way (the policy's logits tracked, say)
name those env arguments in ``env_kwargs()``; :func:`cola_agents.evaluation.evaluate` and
:func:`cola_agents.sb3.make_sb3_env` merge them (:func:`merge_agent_env_kwargs`). The
evaluation checks these protocols, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch

from cola_gym.envs.env import LatentActionEnv
from cola_gym.envs.observation import ObservationLayout
from cola_gym.envs.vector import LatentActionVectorEnv
from cola_gym.model.generation import sample_top_k

EnvOrVectorEnv = LatentActionEnv | LatentActionVectorEnv


@runtime_checkable
class Agent(Protocol):
    """Anything with SB3's ``predict`` (SB3 and sb3-contrib models, the agents here)."""

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]: ...  # fmt: skip


@runtime_checkable
class BoundAgent(Agent, Protocol):
    """An agent that reads the env it acts in: :func:`evaluate` binds it to every env it makes."""

    def bind(self, env: Any) -> None: ...


@runtime_checkable
class EnvKwargsAgent(Agent, Protocol):
    """An agent that needs its env made with some arguments (``track_policy=True``, ...).

    :func:`evaluate` and :func:`make_sb3_env` merge them into the env arguments they are given.
    """

    def env_kwargs(self) -> dict[str, Any]: ...


@runtime_checkable
class PlanningAgent(BoundAgent, EnvKwargsAgent, Protocol):
    """A bound agent that searches; rows an evaluation is done with are marked idle (never searched)."""

    def set_idle_rows(self, rows: Iterable[int]) -> None: ...


def agent_env_kwargs(agent: Any) -> dict[str, Any]:
    """The env arguments ``agent`` needs: its ``env_kwargs()``, or none for other agents."""
    if isinstance(agent, EnvKwargsAgent) and callable(agent.env_kwargs):
        return dict(agent.env_kwargs())
    return {}


def merge_agent_env_kwargs(agent: Any, env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``env_kwargs`` plus the env arguments ``agent`` needs (:func:`agent_env_kwargs`).

    Raises:
        ValueError: a given argument contradicts one the agent needs.
    """
    needed = agent_env_kwargs(agent)
    for key, value in needed.items():
        if key in env_kwargs and env_kwargs[key] != value:
            raise ValueError(
                f"{type(agent).__name__} needs an env made with {key}={value!r}, but {key}={env_kwargs[key]!r} "
                f"was given; leave {key} out (the agent's env_kwargs() sets it)"
            )
    return {**env_kwargs, **needed}


def base_env(env: Any) -> EnvOrVectorEnv:
    """The cola-gym env or vector env under wrappers (Gymnasium's, SB3's ``VecEnv`` adapter)."""
    base = getattr(env, "unwrapped", env)
    base = getattr(base, "vector_env", base)  # the SB3 adapter (cola_agents.sb3.CoLAVecEnv)
    if not isinstance(base, (LatentActionEnv, LatentActionVectorEnv)):
        raise TypeError(f"expected a cola-gym env or vector env, got {type(base).__name__}")
    return base


class _EnvReader:
    """What the bound agents share: the env they read (``None`` until :meth:`bind`)."""

    env: EnvOrVectorEnv | None = None

    def bind(self, env: Any) -> None:
        """Reads ``env`` (its decoding state and the task's action masks) from now on."""
        self.env = base_env(env)


class RandomAgent(_EnvReader):
    """Uniformly random latent codes among the allowed ones (bind it for the task's action masks).

    Args:
        num_actions: the action count when unbound (a bound agent reads it from the env).
        seed: seed of its generator.
    """

    def __init__(self, num_actions: int | None = None, seed: int | None = None) -> None:
        self.num_actions = num_actions
        self.rng = np.random.default_rng(seed)

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:  # fmt: skip
        """One random allowed action per observation."""
        masks = _masks(self.env, observation, self.num_actions)
        actions = np.array([self.rng.choice(np.flatnonzero(mask)) for mask in masks], dtype=np.int64)
        return (actions if np.ndim(observation) > 1 else actions[0]), None


class PriorAgent(_EnvReader):
    """Samples a_t from the CoLA policy pi(a_t | x_1..t) with top-k and temperature.

    Bound to an env made with ``track_policy=True``, it reads the policy's logits from the
    env's decoding state and the task's action masks. Unbound, it reads the prior from
    ``observation="hidden+prior"`` observations, split by ``layout`` (the env's
    ``observation_layout``, or ``ObservationLayout.of(env.observation_space)``). The
    release samples with top-k 40 of 64 codes at temperature 1; ``deterministic=True``
    takes the argmax.

    Several codes can write the same token from a state (aliases), so the most probable code
    need not write the most probable token: with ``greedy="token"`` (bound, latent actions
    only) ``deterministic=True`` pools the probability of the codes that write each token and
    takes that token's most probable code (codes are read most probable first, until the
    unread ones cannot change the answer: usually one world-model call per step).

    Args:
        num_actions: K, for reading unbound observations without a layout (the prior is
            then the observation's last K entries).
        top_k: codes sampled among.
        temperature: sampling temperature.
        seed: seed of its generator.
        layout: how unbound observations split into h_t and the prior.
        greedy: what ``deterministic=True`` maximises: ``"code"`` (the policy's argmax, the
            default) or ``"token"`` (the next token's probability under the policy).
    """

    def __init__(
        self,
        num_actions: int | None = None,
        top_k: int = 40,
        temperature: float = 1.0,
        seed: int | None = None,
        *,
        layout: ObservationLayout | None = None,
        greedy: Literal["code", "token"] = "code",
    ) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 (use deterministic=True for argmax), got {temperature}")
        if greedy not in ("code", "token"):
            raise ValueError(f"greedy must be 'code' or 'token', got {greedy!r}")
        self.num_actions, self.top_k, self.temperature = num_actions, top_k, temperature
        self.layout, self.greedy = layout, greedy
        self.generator = torch.Generator().manual_seed(0 if seed is None else seed)

    def env_kwargs(self) -> dict[str, Any]:
        """Env arguments it needs when bound: the policy's logits, kept up to date."""
        return {"track_policy": True}

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:  # fmt: skip
        """Actions ``[N]`` for observations ``[N, ...]`` (or one action for one observation)."""
        if self.env is not None:
            decoding = self.env.decoding_state
            if decoding is None or decoding.policy_logits is None:
                raise ValueError("PriorAgent needs an env made with track_policy=True, after reset().")
            logits = decoding.policy_logits.float().cpu()
        elif self.layout is not None or self.num_actions is not None:
            observations = np.atleast_2d(observation)
            layout = self.layout
            if layout is None:
                assert self.num_actions is not None
                layout = ObservationLayout(observations.shape[-1] - self.num_actions, self.num_actions)
            _, prior = layout.split(observations)
            if prior is None:
                raise ValueError("the observations carry no prior: make the env with observation='hidden+prior'")
            logits = torch.as_tensor(prior, dtype=torch.float32)
        else:
            raise ValueError("bind the agent to its env (agent.bind(env)), or give the layout of hidden+prior")
        masks = torch.from_numpy(_masks(self.env, observation, logits.shape[-1]))
        logits = logits.masked_fill(~masks, float("-inf"))
        if deterministic and self.greedy == "token":
            actions = self._most_probable_tokens_code(logits)
        elif deterministic:
            actions = logits.argmax(-1)
        else:
            actions = sample_top_k(logits, self.top_k, self.temperature, self.generator)
        actions_np = actions.numpy().astype(np.int64)
        return (actions_np if np.ndim(observation) > 1 else actions_np[0]), None

    def _most_probable_tokens_code(self, logits: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """Per row of masked policy logits ``[N, K]``: the most probable code among those that
        write the token the policy gives the most probability.

        Codes are read ``chunk`` at a time, most probable first, and a row stops once no
        unread code could change its answer (its leading token's mass beats the runner-up's
        by more than the unread codes' probability): exact, and usually a few codes per row.
        """
        if self.env is None or self.env.stepper.action_kind != "latent":
            raise ValueError("greedy='token' needs the agent bound to a latent-action env (agent.bind(env))")
        state, model = self.env.decoding_state, self.env.model
        assert state is not None
        probs = torch.softmax(logits, -1)
        order = probs.argsort(-1, descending=True)
        tokens = torch.full(probs.shape, -1, dtype=torch.long)
        unread = torch.ones(probs.shape[0])
        best = torch.zeros(probs.shape[0], dtype=torch.long)  # each row's leading token so far
        going = torch.arange(probs.shape[0])
        for start in range(0, probs.shape[1], chunk):
            codes = order[going, start : start + chunk]  # [rows, c]
            with torch.inference_mode():
                hidden = state.hidden[going.to(state.hidden.device)][:, None, :].expand(-1, codes.shape[1], -1)
                written = model.world_model_logits(hidden, model.codebook(codes.to(model.device))).argmax(-1)
            tokens[going[:, None], codes] = written.cpu()
            unread[going] -= probs[going[:, None], codes].sum(-1)
            settled = []
            for row in going.tolist():
                read = tokens[row] >= 0
                mass = torch.zeros(int(tokens[row].max()) + 1).scatter_add_(0, tokens[row][read], probs[row][read])
                top = torch.topk(mass, min(2, mass.numel()))
                best[row] = top.indices[0]
                runner_up = float(top.values[1]) if top.values.numel() > 1 else 0.0
                settled.append(float(top.values[0]) - runner_up > float(unread[row]))
            going = going[~torch.tensor(settled)]
            if going.numel() == 0:
                break
        return probs.masked_fill(tokens != best[:, None], -1.0).argmax(-1)


def _masks(env: EnvOrVectorEnv | None, observation: np.ndarray, num_actions: int | None) -> np.ndarray:
    """``bool[N, num_actions]``: the bound env's masks, else all actions of each observation's row."""
    if env is not None:
        return np.atleast_2d(env.action_masks())
    if num_actions is None:
        raise ValueError("bind the agent to its env (agent.bind(env)), or give num_actions")
    return np.ones((len(np.atleast_2d(observation)), num_actions), dtype=bool)
