"""rl-baselines3-zoo on cola-gym ids: hyperparameter files, and GRPO and MaskablePPO added to the zoo.

PPO and A2C run with the zoo unmodified::

    python -m rl_zoo3.train --algo ppo --env CoLA-Countdown-Easy-Train-v0 --gym-packages cola_gym \\
        --conf-file cola_agents/zoo/hyperparams/ppo.yml

GRPO and MaskablePPO are not among the zoo's algorithms; ``python -m cola_agents.zoo`` is the
zoo's ``train`` with ``grpo`` and ``ppo_mask`` added (every other argument is the zoo's)::

    python -m cola_agents.zoo --algo grpo --env CoLA-Countdown-Easy-Train-v0 --gym-packages cola_gym \\
        --conf-file cola_agents/zoo/hyperparams/grpo.yml
"""

from pathlib import Path

HYPERPARAMS = Path(__file__).resolve().parent / "hyperparams"
"""The folder of the zoo hyperparameter files (``ppo.yml``, ``a2c.yml``, ``ppo_mask.yml``, ``grpo.yml``)."""


def add_algorithms() -> None:
    """Registers GRPO (``--algo grpo``) and MaskablePPO (``--algo ppo_mask``) in the zoo's algorithm table."""
    from rl_zoo3.utils import ALGOS
    from sb3_contrib import MaskablePPO

    from cola_agents.algorithms import GRPO

    ALGOS.setdefault("grpo", GRPO)
    ALGOS.setdefault("ppo_mask", MaskablePPO)
