"""Latent-action environments: the task contract, the episode value, the one stepper, the envs.

- :mod:`~cola_gym.envs.task`: :class:`Task`, what a task family implements;
- :mod:`~cola_gym.envs.episode`: :class:`Episode`, an episode's text and task state as one value;
- :mod:`~cola_gym.envs.stepper`: :class:`EpisodeStepper`, code -> token -> episode -> feed, batched;
- :mod:`~cola_gym.envs.rollout`: :func:`rollout`, rows played to the end by any chooser;
- :mod:`~cola_gym.envs.observation`: :class:`ObservationLayout`, where h_t and the prior lie;
- :mod:`~cola_gym.envs.env` and :mod:`~cola_gym.envs.vector`: the Gymnasium envs over any task.

The task families live in :mod:`cola_gym.tasks`.
"""

from cola_gym.envs.env import EnvSnapshot, LatentActionEnv
from cola_gym.envs.episode import Episode
from cola_gym.envs.observation import ObservationBox, ObservationLayout
from cola_gym.envs.rollout import EpisodeRollout, rollout
from cola_gym.envs.stepper import EpisodeStepper
from cola_gym.envs.task import Task, TaskStart, TurnOutcome
from cola_gym.envs.vector import LatentActionVectorEnv

__all__ = [
    "EnvSnapshot",
    "Episode",
    "EpisodeRollout",
    "EpisodeStepper",
    "LatentActionEnv",
    "LatentActionVectorEnv",
    "ObservationBox",
    "ObservationLayout",
    "Task",
    "TaskStart",
    "TurnOutcome",
    "rollout",
]
