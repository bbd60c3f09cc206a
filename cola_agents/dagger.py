"""DAgger for the household games: play a policy, label every state it reaches with the expert.

A policy cloned from an expert's games has seen only the states the expert visits; its first
mistake takes it where it has never been. DAgger (Ross et al., 2011) plays the policy, asks the
expert what it would do in every state the policy reached, and trains on the union. The expert
here is the searching expert (:mod:`cola_gym.tasks.household.searcher`): it replans from any
state, knowing only what the policy's game has shown.

    from cola_agents.dagger import dagger_chats

    chats = list(dagger_chats("CoLA-ALFWorld-Train-v0", range(64)))  # (messages, next command)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from cola_agents.agents import Agent, PriorAgent
from cola_agents.evaluation import evaluate
from cola_gym.envs.task import Message
from cola_gym.registration import task_for
from cola_gym.tasks.household import Game
from cola_gym.tasks.household.searcher import expert_labels
from cola_gym.tasks.household.task import HouseholdTask, labelled_chats


def dagger_chats(
    env_id: str,
    task_indices: Iterable[int],
    agent: Agent | None = None,
    n_envs: int = 8,
    deterministic: bool = True,
    show_progress: bool = False,
    **env_kwargs: Any,
) -> Iterator[tuple[list[Message], str]]:
    """(chat so far, the searching expert's next command) for every state ``agent`` reached.

    Args:
        env_id: a household id (``CoLA-ALFWorld-*``); its games are the task's.
        task_indices: the games to play.
        agent: the policy to play (default: the model's CoLA prior, :class:`PriorAgent`).
        n_envs: games decoded together.
        deterministic: greedy (``True``) or sampled play.
        show_progress: a progress bar over the games.
        **env_kwargs: env arguments (``model``, ...).

    Raises:
        ValueError: ``env_id`` is not a household id.
    """
    task = task_for(env_id)
    if not isinstance(task, HouseholdTask) or task.game_files:
        raise ValueError(f"DAgger labels the generated household games; {env_id} does not play them")
    result = evaluate(agent or PriorAgent(), env_id, task_indices, n_envs=n_envs, deterministic=deterministic,
                      show_progress=show_progress, **env_kwargs)  # fmt: skip
    for index, info in zip(result.task_indices, result.infos, strict=True):
        game = task.game(index)
        assert isinstance(game, Game)
        commands = list(info["commands"])
        yield from labelled_chats(game, commands, expert_labels(game, commands))
