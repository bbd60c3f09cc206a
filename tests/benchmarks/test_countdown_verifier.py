"""``benchmarks/countdown_verifier.py``: the recipe's data sets, and writing the verifier into a model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from cola_agents.cli import build_parser
from cola_agents.config_args import config_values
from cola_agents.mcts import MCTSConfig
from cola_gym.model import CoLAModel
from cola_gym.registration import pretrained_path


def _problems(step) -> range:
    first = int(step.args[step.args.index("--first-problem") + 1])
    return range(first, first + int(step.args[step.args.index("--problems") + 1]))


def test_the_recipe_trains_and_selects_on_disjoint_training_problems(benchmark_script, tmp_path: Path) -> None:
    script = benchmark_script("countdown_verifier")
    assert [step.name for step in script.recipe(tmp_path)][-1] == script.VERIFIER[1] == "q-ranked"
    with pytest.raises(ValueError, match="rounds must be 1 or 2"):
        script.recipe(tmp_path, rounds=3)
    steps = script.recipe(tmp_path, rounds=2)
    names = [step.name for step in steps]
    assert names[: len(script.recipe(tmp_path))] == [step.name for step in script.recipe(tmp_path)]
    for number, step in enumerate(steps):  # every step's needs come before it
        assert all(names.index(need) < number for need in step.needs), step.name
    collections = [step for step in steps if not step.is_training]
    assert all(step.args[step.args.index("--env") + 1].endswith("-Train-v0") for step in collections)
    selection = {p for step in collections if step.name.startswith("select") for p in _problems(step)}
    training = {p for step in collections if not step.name.startswith("select") for p in _problems(step)}
    assert selection and training and not selection & training
    assert not (selection | training) & set(range(32768, 33792))  # the tuning problems stay unseen
    trees = next(step for step in steps if step.name == "trees.jsonl")
    assert trees.needs == ("q-mc",) and str(tmp_path / "q-mc" / "final") in trees.args
    second = next(step for step in steps if step.name == "trees-2.jsonl")
    assert second.needs == ("q-ranked",) and str(tmp_path / "q-ranked" / "final") in second.args
    final = next(step for step in steps if step.name == script.VERIFIER[2])
    assert "--q-ranking-weight" in final.args and str(tmp_path / "q-ranked" / "final") in final.args
    assert final.concatenate[-2:] == ("trees.jsonl", "trees-2.jsonl") and names[-1] == script.VERIFIER[2]
    searches = 0
    for step in collections:  # every command parses; each tree set grows as when its verifier was built
        config = MCTSConfig(**config_values(build_parser().parse_args(step.args), MCTSConfig))
        if "--search" in step.args:
            searches += 1
            assert config.rollout_policy == "greedy" and config.token_budget == 320
            if step.name.startswith(("trees-2", "select-trees-2")):  # the tuned search
                assert config.reuse_greedy_rollouts and config.macro_td_threshold == 0.0
            else:  # the first verifier's trees: every rollout decoded, macro steps on
                assert not config.reuse_greedy_rollouts
                assert config.macro_td_threshold == MCTSConfig().macro_td_threshold
    assert searches == 4


def test_run_orders_the_steps_and_skips_the_finished_ones(benchmark_script, tmp_path: Path, monkeypatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    script = benchmark_script("countdown_verifier")

    def collect(name: str, first: int, needs: tuple[str, ...] = ()):
        args = ["collect-episodes", "--env", script.ENV, "--first-problem", str(first), "--problems", "2",
                "--samples", "1", "--max-tokens", "8", "--out", str(tmp_path / name)]  # fmt: skip
        return script.Step(name, args, needs)

    steps = [collect("a.jsonl", 0), collect("b.jsonl", 2), collect("c.jsonl", 4, needs=("a.jsonl", "b.jsonl"))]
    monkeypatch.setattr(script, "recipe", lambda out, rounds: steps)
    script.run(tmp_path, jobs=2)
    log = capsys.readouterr().out
    assert log.index("c.jsonl: started") > max(log.index("a.jsonl: done"), log.index("b.jsonl: done"))
    for step in steps:
        assert len((tmp_path / step.name).read_text().splitlines()) == 2 and step.done(tmp_path)
    script.run(tmp_path, jobs=2)  # all done: nothing starts
    assert "started" not in capsys.readouterr().out
    failing = script.Step("d", ["collect-episodes", "--env", "No-Such-v0", "--out", str(tmp_path / "d")])
    monkeypatch.setattr(script, "recipe", lambda out, rounds: [failing])
    with pytest.raises(RuntimeError, match="d failed"):
        script.run(tmp_path, jobs=1)


@pytest.fixture
def micro_copy(tmp_path: Path) -> Path:
    base = tmp_path / "pretrained" / "micro-countdown"
    shutil.copytree(pretrained_path("micro-countdown"), base)
    return base


def _verifier(path: Path) -> CoLAModel:
    model = CoLAModel.from_pretrained(pretrained_path("micro-countdown"))
    model.add_q_network(1, seed=3)
    model.save_pretrained(path)
    return model


def _files(directory: Path) -> dict[Path, bytes]:
    return {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_ship_writes_a_model_of_its_own_on_the_base_models_decoder(benchmark_script, micro_copy: Path,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    script = benchmark_script("countdown_verifier")
    verifier = _verifier(tmp_path / "verifier")
    before = _files(micro_copy)
    target = micro_copy.parent / "micro-countdown-verifier"
    (tmp_path / "verifier" / "README.md").write_text("generated card")
    target.mkdir()
    (target / "README.md").write_text("card written by hand")
    script.ship(tmp_path / "verifier", target, micro_copy)
    assert (target / "README.md").read_text() == "card written by hand"  # shipping again keeps it
    assert _files(micro_copy) == before  # the base model is left as it was
    config = json.loads((target / "cola_config.json").read_text())
    assert config["decoder"] == {"name_or_path": "../micro-countdown/decoder", "stored": True}
    shipped, base = CoLAModel.from_pretrained(target), CoLAModel.from_pretrained(micro_copy)
    assert shipped.config.q_network_num_layers == 1 and base.q_network is None
    for key, value in verifier.q_network.state_dict().items():  # stored at the base's precision (bf16)
        assert torch.equal(shipped.q_network.state_dict()[key], value.to(torch.bfloat16).to(value.dtype))
    for name, part in base.heads().items():
        for key, value in part.state_dict().items():
            assert torch.equal(shipped.heads()[name].state_dict()[key], value)
    with safe_open(str(target / "cola_heads.safetensors"), framework="pt") as stored:
        names = stored.keys()
        assert {stored.get_tensor(key).dtype for key in names} == {torch.bfloat16}


def test_ship_refuses_a_verifier_of_another_model(benchmark_script, micro_copy: Path, tmp_path: Path) -> None:
    script = benchmark_script("countdown_verifier")
    verifier = _verifier(tmp_path / "verifier")
    with torch.no_grad():
        next(verifier.policy.parameters()).add_(0.01)
    verifier.save_pretrained(tmp_path / "verifier")
    with pytest.raises(ValueError, match="policy differs"):
        script.ship(tmp_path / "verifier", tmp_path / "out", micro_copy)
    with pytest.raises(ValueError, match="no Q-network"):
        script.ship(micro_copy, tmp_path / "out", micro_copy)
    assert not (tmp_path / "out").exists()


def test_the_shipped_verifier_is_the_micro_model_with_a_q_network() -> None:
    shipped = CoLAModel.from_pretrained(pretrained_path("micro-countdown-verifier"))
    base = CoLAModel.from_pretrained(pretrained_path("micro-countdown"))
    assert shipped.q_network is not None and base.q_network is None
    assert shipped.config.q_network_num_layers == 4
    for name, part in base.heads().items():
        for key, value in part.state_dict().items():
            assert torch.equal(shipped.heads()[name].state_dict()[key], value)
    for key, value in base.decoder.state_dict().items():
        assert torch.equal(shipped.decoder.state_dict()[key], value)
