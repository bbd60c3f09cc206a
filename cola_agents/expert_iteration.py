"""Expert iteration: search's answers on training problems become the policy's training data.

Test-time search finds answers the policy alone rarely samples. Expert iteration (Anthony et al.,
2017; ReST, STaR) keeps what search finds and trains the policy on it, so the next policy
samples it by itself: search on training problems (MCTS-Q or best-of-N; the reward is known
there, so ``leaf_value="oracle"`` scores the leaves honestly), keep the right answers as
(prompt messages, response) chats, and fine-tune the CoLA policy on them with stage 1b:

    cola-gym demos --env CoLA-Micro-Countdown-Medium-Train-v0 --search mcts --budget 256 \\
        --limit 1024 --out runs/ei/round1.jsonl
    cola-gym train --stage 1b --model cola_gym/pretrained/micro-countdown --data runs/ei/round1.jsonl \\
        --prompt-field messages --response-field response --out runs/ei/round1

Single-turn tasks (math, Countdown, reasoning-gym): an episode's text is its one response.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from cola_agents.evaluation import evaluate
from cola_agents.mcts.agent import PlanningAgentBase
from cola_gym.envs.task import Message
from cola_gym.registration import task_for


def search_chats(
    agent: PlanningAgentBase,
    env_id: str,
    task_indices: Iterable[int],
    n_envs: int = 8,
    show_progress: bool = False,
    stats: dict[str, Any] | None = None,
    **env_kwargs: Any,
) -> Iterator[tuple[list[Message], str]]:
    """(prompt messages, response) for every problem that ``agent``'s search answered right.

    Args:
        agent: a planning agent (:class:`~cola_agents.mcts.MCTSAgent`,
            :class:`~cola_agents.mcts.agent.BestOfNAgent`); its ``stats`` count the tokens spent.
        env_id: a single-turn id, normally a ``-Train-`` one (search on the problems you train on).
        task_indices: the problems.
        n_envs: problems searched together.
        show_progress: a progress bar over the problems.
        stats: filled with ``problems``, ``solved`` and the search's token count when given.
        **env_kwargs: env arguments (``model``, ``data_dir``, ...).

    Raises:
        ValueError: ``env_id``'s task has more than one turn.
    """
    task = task_for(env_id, data_dir=env_kwargs.get("data_dir"))
    if "turns" in task.info_keys:
        raise ValueError(f"{env_id} is a multi-turn task: expert iteration keeps one response per problem")
    result = evaluate(agent, env_id, task_indices, n_envs=n_envs, show_progress=show_progress, keep_text=True,
                      **env_kwargs)  # fmt: skip
    if stats is not None:
        stats.update(problems=len(result.successes), solved=int(sum(result.successes)),
                     search_tokens=agent.stats.tokens, **agent.stats.summary())  # fmt: skip
    rng = np.random.default_rng(0)
    for index, success, text in zip(result.task_indices, result.successes, result.texts, strict=True):
        if success and text.strip():
            start = task.begin(task.check_options({"task_index": index}), rng)
            yield list(start.messages), text
