"""rl-baselines3-zoo on cola-gym ids: hyperparameter files, and the algorithms the zoo lacks added to it.

PPO and A2C run with the zoo unmodified::

    python -m rl_zoo3.train --algo ppo --env CoLA-Countdown-Easy-Train-v0 --gym-packages cola_gym \\
        --conf-file cola_agents/zoo/hyperparams/ppo.yml

GRPO and MaskablePPO are not among the zoo's algorithms; ``python -m cola_agents.zoo`` is the
zoo's ``train`` with every algorithm of :data:`cola_agents.algorithms.ALGORITHMS` added under
its ``zoo_name`` (``grpo``, ``ppo_mask``; every other argument is the zoo's)::

    python -m cola_agents.zoo --algo grpo --env CoLA-Countdown-Easy-Train-v0 --gym-packages cola_gym \\
        --conf-file cola_agents/zoo/hyperparams/grpo.yml
"""

from pathlib import Path

from cola_agents.algorithms import ALGORITHMS

HYPERPARAMS = Path(__file__).resolve().parent / "hyperparams"
"""The folder of the zoo hyperparameter files, one ``<zoo_name>.yml`` per algorithm."""


def add_algorithms() -> None:
    """Adds every algorithm of :data:`~cola_agents.algorithms.ALGORITHMS` to the zoo's algorithm
    table under its ``zoo_name`` (the zoo's own entries, such as ``ppo``, are kept)."""
    from rl_zoo3.utils import ALGOS

    for entry in ALGORITHMS.values():
        if entry.zoo_name not in ALGOS:
            ALGOS[entry.zoo_name] = entry.algorithm_class()
