"""GRPO over latent actions and token twins, tested as SB3 tests its algorithms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv

from cola_agents.algorithms import GRPO, GroupPolicy
from cola_agents.algorithms.grpo import START, _Turns, anchor_advantages, group_advantages, turn_returns
from cola_agents.sb3 import CoLAVecEnv
from cola_gym.envs import LatentActionVectorEnv, Task, TaskStart, TurnOutcome
from cola_gym.envs.observation import ObservationLayout
from cola_gym.model.generation import greedy_policy, rollout


@pytest.fixture
def math_env(vec_env):
    return lambda *args, **kwargs: vec_env(*args, **{"max_episode_steps": 6, **kwargs})


def _parameters(agent: GRPO) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.policy.parameters()]


@pytest.mark.parametrize(
    ("returns", "scale", "expected"),
    [
        ([[1.0, 0.0, 0.0, 1.0]], True, [[1.0, -1.0, -1.0, 1.0]]),
        ([[1.0, 1.0, 1.0, 1.0]], True, [[0.0, 0.0, 0.0, 0.0]]),  # no spread: no signal
        ([[0.0, 0.0, 0.0, 0.0]], True, [[0.0, 0.0, 0.0, 0.0]]),
        ([[1.0, 0.0, 0.0, 0.0]], False, [[0.75, -0.25, -0.25, -0.25]]),  # Dr. GRPO: centred only
        ([[0.1, 0.1], [1.0, 0.0]], True, [[0.0, 0.0], [1.0, -1.0]]),  # groups are scored separately
    ],
)
def test_group_advantages(returns, scale, expected) -> None:
    np.testing.assert_allclose(group_advantages(np.array(returns), scale), expected, atol=1e-5)


def test_grpo_learns_the_rewarded_latent_action(speller, first_token_task) -> None:
    model, spell = speller
    actions = spell(" apple banana cherry date elder fig grape")
    task = first_token_task(" grape")
    env = CoLAVecEnv(LatentActionVectorEnv(num_envs=8, max_episode_steps=2, task=task, model=model))
    agent = GRPO("MlpPolicy", env, group_size=8, n_epochs=4, batch_size=8, learning_rate=3e-3, merge_aliases=True,
                 seed=0)  # fmt: skip
    agent.learn(3000)
    obs = env.reset()
    chosen, _ = agent.predict(obs, deterministic=True)
    assert (chosen == actions[-1]).all(), (chosen, actions[-1])
    assert agent.ep_success_buffer and np.mean(agent.ep_success_buffer) > 0.5  # rollouts were mostly right by the end


def test_aliased_codes_are_scored_as_the_token_they_write(speller, first_token_task) -> None:
    model, spell = speller
    spell(" apple banana cherry date elder fig grape")  # codes 0-6 spell; 7-31 write the decoder's token
    env = CoLAVecEnv(LatentActionVectorEnv(num_envs=4, max_episode_steps=3, task=first_token_task(" grape"),
                                           model=model))  # fmt: skip
    agent = GRPO("MlpPolicy", env, group_size=4, merge_aliases=True, seed=0)
    obs = torch.as_tensor(env.reset())
    state = env.unwrapped.vector_env.decoding_state
    free = model.next_tokens(state, torch.full((4,), 31))  # what every unspelled code writes
    actions = torch.tensor([0, 6, 7, 31])
    masks = agent.alias_masks(obs, actions)
    assert masks is not None and masks.shape == (4, 32) and masks[torch.arange(4), actions].all()
    each = torch.stack([model.next_tokens(state, torch.full((4,), a)) for a in range(32)], dim=1)  # [4, 32]
    for row, action in enumerate(actions.tolist()):
        assert torch.equal(masks[row], each[row] == each[row, action])
    assert (each[:, 7:] == free[:, None]).all() and masks[2:, 7:].all()  # the unspelled codes are one action
    assert GRPO("MlpPolicy", env, group_size=4).alias_masks(obs, actions) is None  # off by default


def test_steps_where_every_code_writes_one_token_carry_no_gradient(tiny_decoder_dir: Path, data_dir: Path) -> None:
    """Fresh heads: the world model leaves h_t unchanged, so all 64 codes write the decoder's token."""
    from cola_agents.algorithms.grpo import GroupRollout
    from cola_agents.sb3 import make_sb3_env

    env = make_sb3_env("CoLA-GSM8K-v0", n_envs=4, seed=0, model=str(tiny_decoder_dir), data_dir=str(data_dir))
    obs = env.reset()
    actions = np.array([0, 5, 9, 63])
    outcome = np.zeros((2, 2))  # episodes that differ only in which code they sampled, scored +-1
    rollout = GroupRollout(obs, actions, np.full(4, -np.log(64), dtype=np.float32),
                           np.array([1.0, -1.0, 1.0, -1.0], dtype=np.float32), outcome, outcome.astype(bool),
                           np.ones((2, 2), dtype=np.int64))  # fmt: skip
    for merge_aliases in (True, False):
        agent = GRPO("MlpPolicy", env, group_size=2, learning_rate=1e-2, merge_aliases=merge_aliases, seed=0)
        agent.set_logger(configure(None, [""]))
        before = _parameters(agent)
        agent.train(rollout)
        moved = not all(torch.equal(a, b) for a, b in zip(before, _parameters(agent), strict=True))
        assert moved is not merge_aliases  # per code, noise pushes the policy around; per token, nothing does
    assert agent.logger.name_to_value.get("train/single_token_steps") is None
    merged = GRPO("MlpPolicy", env, group_size=2, merge_aliases=True, seed=0)
    merged.set_logger(configure(None, [""]))
    merged.train(rollout)
    assert merged.logger.name_to_value["train/single_token_steps"] == 1.0


@pytest.mark.parametrize("streamed", [True, False], ids=["rows-stream-slots", "waves"])
def test_each_group_plays_one_problem_and_the_slots_cover_the_groups(
    math_env, streamed: bool, tiny_cola_dir: Path, data_dir: Path
) -> None:
    # 2 groups of 4 = 8 slots on 3 rows: rows take slots as they free up (a cola-gym vector env)
    # or in waves of 3 started by resets (any other VecEnv); the last turn has a spare row
    kwargs = {"model": str(tiny_cola_dir), "data_dir": str(data_dir), "max_episode_steps": 6}
    env = math_env(n_envs=3) if streamed else DummyVecEnv([lambda: gym.make("CoLA-GSM8K-v0", **kwargs)] * 3)
    agent = GRPO("MlpPolicy", env, group_size=4, groups_per_rollout=2, seed=0)
    seen: dict[int, list[int]] = {}

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            local = self.locals
            for row, slot in enumerate(local["slot_of_row"]):
                if slot is not None and local["dones"][row]:
                    group = local["slots"][slot][0]
                    seen.setdefault(group, []).append(int(local["infos"][row]["task_index"]))
            return True

    agent._setup_learn(10, Record())
    callback = agent._init_callback(Record())
    result = agent.collect_rollouts(callback)
    assert result is not None
    assert sorted(seen) == [0, 1] and all(len(v) == 4 and len(set(v)) == 1 for v in seen.values())
    assert result.returns.shape == result.successes.shape == (2, 4)
    assert len(result.actions) == result.lengths.sum() == len(result.observations) == len(result.advantages)
    assert agent.num_timesteps == 3 * sum(6 for _ in range(3))  # every row's decoder steps count


def test_prior_policy_starts_as_the_bc_policy_and_the_token_twin_as_the_decoder(math_env, tiny_cola) -> None:
    env = math_env(n_envs=2, observation="hidden+prior")
    agent = GRPO("MlpPolicy", env, group_size=2, seed=0)
    assert agent.policy.use_prior
    base = env.unwrapped.vector_env
    obs = env.reset()
    expected = rollout(tiny_cola, base.decoding_state, 5, greedy_policy)
    tokens = []
    for _ in range(5):
        actions, _ = agent.predict(obs, deterministic=True)
        tokens.append(tiny_cola.next_tokens(base.decoding_state, torch.as_tensor(actions)))
        obs, _, _, _ = env.step(actions)
    assert torch.equal(torch.stack(tokens, dim=1), expected)

    twin = math_env("CoLA-GSM8K-Token-v0", n_envs=2, observation="hidden+prior")
    assert twin.observation_space.shape == (tiny_cola.hidden_size + twin.action_space.n,)
    token_agent = GRPO("MlpPolicy", twin, group_size=2, seed=0)
    obs = twin.reset()
    hidden = twin.unwrapped.vector_env.decoding_state.hidden
    actions, _ = token_agent.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, tiny_cola.decoder_logits(hidden).argmax(-1).numpy())
    token_agent.learn(16)


def test_group_policy_reads_the_prior_from_the_layout() -> None:
    layout = ObservationLayout(hidden=3, prior=4)
    space = layout.space(np.ones(3, dtype=np.float32))
    policy = GroupPolicy(space, gym.spaces.Discrete(4), lambda _: 1e-3)
    assert policy.use_prior and policy.layout == layout
    prior = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    obs = torch.cat([torch.tensor([[0.5, -0.5, 0.25]]), prior.log()], dim=-1)
    torch.testing.assert_close(policy.logits(obs).softmax(-1), prior)  # untrained, it is the prior
    plain = gym.spaces.Box(space.low, space.high, dtype=np.float32)  # the same bounds, no layout: no prior
    assert not GroupPolicy(plain, gym.spaces.Discrete(4), lambda _: 1e-3).use_prior
    with pytest.raises(ValueError, match="has 4 entries for 5 actions"):
        GroupPolicy(space, gym.spaces.Discrete(5), lambda _: 1e-3)


def test_kl_term_needs_the_prior_and_is_logged(math_env) -> None:
    with pytest.raises(ValueError, match="hidden\\+prior"):
        GRPO("MlpPolicy", math_env(n_envs=2), group_size=2, kl_coef=0.1)
    with pytest.raises(ValueError, match="hidden\\+prior"):
        GRPO("MlpPolicy", math_env(n_envs=2), group_size=2, policy_kwargs={"use_prior": True})
    env = math_env(n_envs=4, observation="hidden+prior", prior_kl_coef=0.1)
    agent = GRPO("MlpPolicy", env, group_size=4, kl_coef=0.1, learning_rate=1e-2, seed=0)
    agent.learn(48, log_interval=0)  # nothing dumped: the last update's values stay readable
    assert "train/kl_prior" in agent.logger.name_to_value
    assert agent.logger.name_to_value["train/kl_prior"] >= 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"group_size": 1},
        {"groups_per_rollout": 0},
        {"clip_range": 0.0},
        {"kl_coef": -1.0},
        {"batch_size": 0},
        {"group_size": 2.5},
        {"n_epochs": 1.5},
        {"group_size": True},
        {"max_grad_norm": float("nan")},
        {"step_credit": -1.0},
        {"step_gamma": 0.0},
    ],
)
def test_bad_settings_are_refused(math_env, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must be|need"):
        GRPO("MlpPolicy", math_env(n_envs=2), **{"group_size": 2, **kwargs})


@pytest.mark.parametrize("budget", [-5, 2.5])
def test_a_bad_budget_is_refused(math_env, budget: Any) -> None:
    agent = GRPO("MlpPolicy", math_env(n_envs=2), group_size=2)
    with pytest.raises(ValueError, match="total_timesteps must be an integer >= 0"):
        agent.learn(budget)


def test_save_load_round_trip_and_seeds(math_env, tmp_path: Path) -> None:
    env = math_env(n_envs=4, prior_kl_coef=0.1)  # a dense, action-dependent reward: groups differ
    agent = GRPO("MlpPolicy", env, group_size=4, learning_rate=1e-2, seed=3, tensorboard_log=str(tmp_path / "tb"))
    before = _parameters(agent)
    agent.learn(48)
    after = _parameters(agent)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert list((tmp_path / "tb").glob("GRPO_1/events.out.tfevents.*"))  # TensorBoard
    agent.save(tmp_path / "grpo.zip")
    loaded = GRPO.load(tmp_path / "grpo.zip", env=env)
    assert isinstance(loaded.policy, GroupPolicy) and loaded.group_size == 4
    obs = env.reset()
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    for a, b in zip(after, _parameters(loaded), strict=True):
        torch.testing.assert_close(a, b)
    loaded.learn(24, reset_num_timesteps=False)  # and it continues

    same = GRPO("MlpPolicy", math_env(n_envs=4, prior_kl_coef=0.1), group_size=4, learning_rate=1e-2, seed=3)
    same.learn(48)
    other = GRPO("MlpPolicy", math_env(n_envs=4, prior_kl_coef=0.1), group_size=4, learning_rate=1e-2, seed=4)
    other.learn(48)
    assert all(torch.equal(a, b) for a, b in zip(after, _parameters(same), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(after, _parameters(other), strict=True))


def test_single_gymnasium_env_as_rl_zoo_builds_it(tiny_cola_dir: Path, data_dir: Path) -> None:
    env = DummyVecEnv([lambda: gym.make("CoLA-GSM8K-v0", model=str(tiny_cola_dir), data_dir=str(data_dir),
                                        max_episode_steps=4, prior_kl_coef=0.1)])  # fmt: skip
    agent = GRPO("MlpPolicy", env, group_size=2, seed=0, task_indices=[0, 1, 2])
    agent.learn(16)
    assert agent.num_timesteps >= 16


def test_merge_aliases_reads_the_world_model_through_a_dummy_vec_env(tiny_cola_dir: Path, data_dir: Path) -> None:
    env = DummyVecEnv([lambda: gym.make("CoLA-GSM8K-v0", model=str(tiny_cola_dir), data_dir=str(data_dir),
                                        max_episode_steps=4)])  # fmt: skip
    agent = GRPO("MlpPolicy", env, group_size=2, merge_aliases=True, seed=0, task_indices=[0, 1])
    obs = torch.as_tensor(env.reset())
    model = env.envs[0].unwrapped.stepper.model
    hidden, prior = env.envs[0].unwrapped.observation_layout.split(obs)
    assert prior is None and hidden.shape == (1, model.hidden_size)
    each = model.tokens_of_every_action(hidden)  # [1, K]
    assert each[0].unique().numel() > 1  # the codes disagree here, so a mask can be wrong
    for action in (0, 17):
        masks = agent.alias_masks(obs, torch.tensor([action]))
        assert masks is not None and torch.equal(masks[0], each[0] == each[0, action])
    agent.learn(16)  # and trains with it
    assert agent.num_timesteps >= 16

    foreign = GRPO("MlpPolicy", DummyVecEnv([lambda: gym.make("CartPole-v1")]), group_size=2, merge_aliases=True)
    with pytest.raises(ValueError, match="needs a cola-gym env"):
        foreign.alias_masks(torch.zeros(1, 4), torch.zeros(1, dtype=torch.long))


def test_turn_returns_and_anchor_groups() -> None:
    np.testing.assert_allclose(turn_returns([0.0, -0.1, 1.0], 0.5), [0.2, 0.4, 1.0])
    # groups 0 and 1 both visit anchor "a": only turns of one group are compared
    advantages = anchor_advantages([0, 0, 0, 1, 1], ["a", "a", "b", "a", "a"], [1.0, 0.0, 5.0, 2.0, 2.0])
    np.testing.assert_allclose(advantages, [1.0, -1.0, 0.0, 0.0, 0.0], atol=1e-5)


def test_each_step_gets_the_advantage_of_its_turn() -> None:
    """Two episodes of one group: both start at the common start and reach state "a"; the first wins
    from there, the second wastes a turn in "a" (to "b") and loses."""
    gamma = 0.5
    turns = _Turns([(0, 0), (0, 1)])
    turns.restart([0, 1])
    turns.record(0, 0, 0.0, {"turn": 0, "anchor": "s0"})  # a token in the middle of turn 0
    turns.record(0, 0, 0.0, {"turn": 1, "anchor": "a"})  # turn 0 ends in "a"
    turns.record(1, 1, 0.0, {"turn": 1, "anchor": "a"})
    turns.record(0, 0, 1.0, None)  # turn 1 of episode 0 wins
    turns.record(1, 1, 0.0, {"turn": 2, "anchor": "b"})
    turns.record(1, 1, 0.0, None)
    # turn returns: episode 0 [0.5, 1], episode 1 [0, 0, 0]; START: 0.5 vs 0, "a": 1 vs 0, "b" alone
    expected = [1.0, 1.0, -1.0, 1.0, -1.0, 0.0]
    np.testing.assert_allclose(turns.advantages(gamma, scale=True), expected, atol=1e-5)
    assert turns.anchor == [START, START, "a", "a", "b"] and turns.shared_share == 4 / 5


class TwoTurnTask(Task[int]):
    """Two one-token turns; the second earns 1 when it writes the target; the state is the turn count."""

    def __init__(self, target: str) -> None:
        self.target = target

    @property
    def num_tasks(self) -> int:
        return 1

    def begin(self, options: Any, rng: Any) -> TaskStart[int]:
        return TaskStart(0, ({"role": "user", "content": "Say anything, then the magic word."},))

    def turn_complete(self, state: int, turn_text: str) -> bool:
        return True

    def end_turn(self, state: int, turn_text: str) -> TurnOutcome[int]:
        if state == 0:
            return TurnOutcome(1, terminated=False, next_message="Now the magic word.")
        return TurnOutcome(2, reward=float(turn_text == self.target))

    def anchor(self, state: int) -> int:
        return state


def test_step_credit_learns_the_rewarded_second_turn(speller) -> None:
    model, spell = speller
    actions = spell(" apple banana cherry date elder fig grape")
    env = CoLAVecEnv(LatentActionVectorEnv(num_envs=8, max_episode_steps=3, task=TwoTurnTask(" grape"), model=model))
    agent = GRPO("MlpPolicy", env, group_size=8, n_epochs=4, batch_size=16, learning_rate=3e-3, merge_aliases=True,
                 step_credit=1.0, seed=0)  # fmt: skip
    agent.learn(1500)
    assert agent.ep_success_buffer and np.mean(agent.ep_success_buffer) > 0.5, actions[-1]
    assert agent.turns_sharing_an_anchor > 0.5  # both turns of every episode start from a shared state


def test_step_credit_is_off_unless_asked_for_and_needs_anchors(speller, first_token_task) -> None:
    model, _ = speller
    env = CoLAVecEnv(LatentActionVectorEnv(num_envs=4, max_episode_steps=3, task=TwoTurnTask(" grape"), model=model))
    assert GRPO("MlpPolicy", env, group_size=4).step_credit == 0.0
    plain = CoLAVecEnv(LatentActionVectorEnv(num_envs=4, max_episode_steps=3, task=first_token_task(" grape", 1),
                                             model=model))  # fmt: skip
    agent = GRPO("MlpPolicy", plain, group_size=4, step_credit=1.0)
    plain_two_turns = TwoTurnTask(" grape")
    plain_two_turns.anchor = lambda state: None  # type: ignore[method-assign]
    no_anchor = CoLAVecEnv(LatentActionVectorEnv(num_envs=4, max_episode_steps=3, task=plain_two_turns, model=model))
    with pytest.raises(ValueError, match="anchor states"):
        GRPO("MlpPolicy", no_anchor, group_size=4, step_credit=1.0).learn(16)
    agent.learn(8)  # one-turn episodes end before any anchor is read: nothing to compare, nothing refused
