"""``python -m cola_agents.zoo``: rl-zoo3's ``train``, every algorithm of ``cola_agents.algorithms`` among its own."""

from cola_agents.zoo import add_algorithms


def main() -> None:
    """Adds the algorithms, then runs the zoo's ``train`` (it reads the algorithm table when it parses arguments)."""
    add_algorithms()
    from rl_zoo3.train import train

    train()


if __name__ == "__main__":
    main()
