"""One algorithm table, read by suite validation, the runner, the zoo and the command line."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy

from cola_agents.algorithms import (
    ALGORITHMS,
    AlgorithmEntry,
    algorithm_class,
    algorithm_entry,
    algorithm_names,
    import_object,
    make_algorithm,
)
from cola_agents.benchmark import runner
from cola_agents.benchmark.suite import AlgorithmSpec, RunSpec, TaskSpec
from cola_agents.cli import build_parser
from cola_agents.policies import CoLAMaskablePriorPolicy, CoLAPriorPolicy
from cola_agents.sb3 import make_sb3_env
from cola_agents.zoo import HYPERPARAMS

TWIN = AlgorithmEntry("ppo_twin", "stable_baselines3:PPO", "cola_agents.policies:CoLAPriorPolicy", "ppo_twin",
                      "PPO under a second name")  # fmt: skip


def test_every_entry_imports_its_class_and_its_prior_policy() -> None:
    assert algorithm_names() == tuple(ALGORITHMS) == tuple(entry.name for entry in ALGORITHMS.values())
    for entry in ALGORITHMS.values():
        cls = entry.algorithm_class()
        assert issubclass(cls, BaseAlgorithm) and algorithm_class(entry.name) is cls
        policy = entry.policy()
        if isinstance(policy, str):  # an alias of the algorithm's own policy
            assert policy in cls.policy_aliases, entry.name
        else:
            assert issubclass(policy, BasePolicy), entry.name
    assert ALGORITHMS["ppo_mask"].policy() is CoLAMaskablePriorPolicy
    assert ALGORITHMS["ppo"].policy() is ALGORITHMS["a2c"].policy() is CoLAPriorPolicy


def test_zoo_names_are_unique_and_each_has_its_hyperparameter_file() -> None:
    zoo_names = [entry.zoo_name for entry in ALGORITHMS.values()]
    assert len(set(zoo_names)) == len(zoo_names)
    assert sorted(p.stem for p in HYPERPARAMS.glob("*.yml")) == sorted(zoo_names)
    for entry in ALGORITHMS.values():
        default = yaml.safe_load((HYPERPARAMS / f"{entry.zoo_name}.yml").read_text())["default"]
        assert default["policy"] == entry.prior_policy.replace(":", "."), entry.name  # the zoo's dotted form


def test_one_name_per_algorithm() -> None:
    with pytest.raises(ValueError, match=r"unknown algorithm 'maskable_ppo'; choose from \('ppo', 'a2c', 'ppo_mask'"):
        algorithm_entry("maskable_ppo")
    with pytest.raises(ValueError, match="unknown algorithm 'maskable_ppo'"):
        AlgorithmSpec("masked", "maskable_ppo")
    with pytest.raises(ValueError, match="not a 'module:name' path"):
        import_object("stable_baselines3.PPO")


def test_reading_the_table_imports_no_algorithm() -> None:
    code = (
        "import json, sys\n"
        "from cola_agents.algorithms import ALGORITHMS, algorithm_names\n"
        "import cola_agents.benchmark.suite, cola_agents.zoo\n"
        "print(json.dumps([m for m in ('stable_baselines3', 'sb3_contrib', 'rl_zoo3') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_a_new_entry_is_all_that_suites_the_runner_the_zoo_and_the_cli_need(
    tiny_cola_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ALGORITHMS, TWIN.name, TWIN)
    spec = AlgorithmSpec("twin", "ppo_twin", hyperparameters={"n_steps": 4, "batch_size": 8, "n_epochs": 1})
    with pytest.raises(ValueError, match="ppo_twin has no hyperparameter 'group_size'"):
        AlgorithmSpec("twin", "ppo_twin", hyperparameters={"group_size": 2})  # checked against PPO's signature
    task = TaskSpec(train="CoLA-Countdown-Easy-Train-v0", eval="CoLA-Countdown-Easy-v0")
    run = RunSpec(spec, task, seed=0, budget=8, eval_budgets=(0, 8), eval_problems=2, n_envs=2)
    env = make_sb3_env(task.train, n_envs=2, seed=0, model=str(tiny_cola_dir), observation="hidden+prior",
                       max_episode_steps=4)  # fmt: skip
    agent = runner.make_agent(run, env, tensorboard_log=None)
    assert type(agent) is PPO and isinstance(agent.policy, CoLAPriorPolicy) and agent.n_steps == 4
    assert runner.algorithm_class(run) is PPO
    env.close()

    # rl-zoo3 patches Gymnasium's TimeLimit when imported: its check runs in a process of its own
    if importlib.util.find_spec("rl_zoo3") is None:
        pytest.skip("rl-zoo3 is not installed")
    twin = (TWIN.name, TWIN.class_path, TWIN.prior_policy, TWIN.zoo_name, TWIN.summary)
    code = (
        "from cola_agents.algorithms import ALGORITHMS, AlgorithmEntry, algorithm_class\n"
        "from cola_agents.zoo import add_algorithms\n"
        f"ALGORITHMS['ppo_twin'] = AlgorithmEntry(*{twin!r})\n"
        "add_algorithms()\n"
        "from rl_zoo3.utils import ALGOS\n"
        "from stable_baselines3 import PPO\n"
        "print(ALGOS['ppo_twin'] is PPO, ALGOS['ppo_mask'] is algorithm_class('ppo_mask'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]

    parser = build_parser()
    assert parser.parse_args(["episode", "--agent", "ppo_twin", "--checkpoint", "x.zip"]).agent == "ppo_twin"


def test_make_algorithm_starts_each_algorithm_from_its_prior_policy(tiny_cola_dir: Path) -> None:
    env = make_sb3_env("CoLA-Countdown-Easy-Train-v0", n_envs=2, seed=0, model=str(tiny_cola_dir),
                       observation="hidden+prior", max_episode_steps=4)  # fmt: skip
    kwargs = {"ppo": {"n_steps": 4, "batch_size": 8}, "a2c": {"n_steps": 4},
              "ppo_mask": {"n_steps": 4, "batch_size": 8}, "grpo": {"group_size": 2}}  # fmt: skip
    assert sorted(kwargs) == sorted(ALGORITHMS)
    for name, hyperparameters in kwargs.items():
        agent = make_algorithm(name, env, seed=0, **hyperparameters)
        assert type(agent) is algorithm_class(name)
        policy = ALGORITHMS[name].policy()
        expected = agent.policy_aliases[policy] if isinstance(policy, str) else policy
        assert type(agent.policy) is expected, name
    env.close()
