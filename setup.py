"""Package discovery; everything else is declared in setup.cfg.

setup.cfg can either list packages by hand or find them, not both, and the task specs in
``envs/`` ship as the package ``cola_gym.specs``, which no search finds: so every package
under ``cola_gym/`` and ``cola_agents/`` is found here and the specs are added by name.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["cola_gym", "cola_gym.*", "cola_agents", "cola_agents.*"]), "cola_gym.specs"],
    package_dir={"cola_gym.specs": "envs"},
)
