"""``python -m cola_agents.zoo``: rl-zoo3's ``train`` with GRPO and MaskablePPO among its algorithms."""

from cola_agents.zoo import add_algorithms

add_algorithms()

from rl_zoo3.train import train  # noqa: E402 - the zoo reads its algorithm table when it parses arguments

train()
