"""``python -m cola_agents.cli``: the ``cola-gym`` command (``torchrun ... -m cola_agents.cli train ...``)."""

import sys

from cola_agents.cli import main

if __name__ == "__main__":
    sys.exit(main())
