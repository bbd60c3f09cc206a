"""Expert iteration's data: the answers search got right on training problems, as training chats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cola_agents.cli import main
from cola_agents.expert_iteration import search_chats
from cola_agents.mcts import MCTSAgent, MCTSConfig
from cola_gym.model import CoLAModel
from cola_gym.registration import entry, task_for
from cola_gym.training.data import TextSource, load_examples

ENV_ID = "CoLA-Micro-Countdown-Medium-Train-v0"


@pytest.fixture(scope="module")
def micro() -> CoLAModel:
    return CoLAModel.from_pretrained(entry(ENV_ID).model)


def test_search_keeps_exactly_the_answers_the_grader_accepts(micro: CoLAModel) -> None:
    config = MCTSConfig(num_simulations=4096, token_budget=96, leaf_value="oracle",
                        rollout_max_tokens=entry(ENV_ID).max_episode_steps or 64)  # fmt: skip
    agent = MCTSAgent(micro, config)
    stats: dict = {}
    chats = list(search_chats(agent, ENV_ID, range(12), n_envs=6, stats=stats, model=micro))
    assert stats["problems"] == 12 and stats["solved"] == len(chats) > 0
    assert stats["search_tokens"] == agent.stats.tokens and stats["rows_per_decoder_call"] > 1
    task, rng = task_for(ENV_ID), np.random.default_rng(0)
    prompts = {}
    for index in range(12):
        start = task.begin(task.check_options({"task_index": index}), rng)
        prompts[json.dumps(start.messages)] = start.state
    for messages, response in chats:
        state = prompts[json.dumps(tuple(messages))]  # the problem's own prompt, as the env poses it
        assert task.end_turn(state, response).reward == 1.0, response  # the real grader, on the kept text


def test_demos_search_writes_training_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "round1.jsonl"
    assert main(["demos", "--env", ENV_ID, "--search", "best-of-n", "--samples", "4", "--budget", "128",
                 "--limit", "8", "--out", str(out)]) == 0  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(set(row) == {"messages", "response"} for row in rows)
    examples = load_examples([TextSource(str(out), prompt_field="messages", response_field="response")],
                             CoLAModel.from_pretrained(entry(ENV_ID).model).tokenizer, seq_len=256)  # fmt: skip
    assert len(examples) == len(rows)
    with pytest.raises(ValueError, match="multi-turn"):
        list(search_chats(MCTSAgent(CoLAModel.from_pretrained(entry(ENV_ID).model), MCTSConfig(leaf_value="oracle")),
                          "CoLA-Micro-ALFWorld-Train-v0", range(1)))  # fmt: skip
    assert main(["demos", "--env", ENV_ID, "--search", "mcts", "--budget", "0", "--out", str(out)]) == 2
    assert "--budget must be >= 1" in capsys.readouterr().err
