"""The batched vector env equals N single envs stepped with the same actions."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.envs import LatentActionEnv, LatentActionVectorEnv
from cola_gym.errors import InvalidActionError


def _make_vec(num_envs: int, env_id: str = "CoLA-GSM8K-v0", **kwargs) -> LatentActionVectorEnv:
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs).unwrapped


def _compare(ours: tuple, reference: tuple) -> None:
    obs, rewards, terminated, truncated, infos = ours
    ref_obs, ref_rewards, ref_terminated, ref_truncated, ref_infos = reference
    np.testing.assert_allclose(obs, ref_obs, atol=2e-4)
    np.testing.assert_array_equal(rewards, ref_rewards)
    np.testing.assert_array_equal(terminated, ref_terminated)
    np.testing.assert_array_equal(truncated, ref_truncated)
    for key in ("text", "answer", "is_correct", "problem_index", "num_tokens", "is_success", "task_index"):
        np.testing.assert_array_equal(infos[key], ref_infos[key], err_msg=key)
    assert set(infos) == set(ref_infos)
    if "final_obs" in ref_infos:
        for row in np.flatnonzero(ref_infos["_final_obs"]):
            np.testing.assert_allclose(infos["final_obs"][row], ref_infos["final_obs"][row], atol=2e-4)
            assert infos["final_info"]["text"][row] == ref_infos["final_info"]["text"][row]


@pytest.mark.parametrize("env_id", ["CoLA-GSM8K-v0", "CoLA-GSM8K-Token-v0"])
def test_vector_env_equals_single_envs(env_id: str, tiny_cola_dir: Path, data_dir: Path) -> None:
    kwargs = {"model": str(tiny_cola_dir), "data_dir": str(data_dir), "max_episode_steps": 7}
    vector = gym.make_vec(env_id, num_envs=4, vectorization_mode="vector_entry_point", **kwargs)
    assert isinstance(vector.unwrapped, LatentActionVectorEnv)
    reference = SyncVectorEnv([lambda: gym.make(env_id, **kwargs) for _ in range(4)],
                              autoreset_mode=AutoresetMode.SAME_STEP)  # fmt: skip
    _obs, infos = vector.reset(seed=3)
    ref_obs, ref_infos = reference.reset(seed=3)
    np.testing.assert_allclose(_obs, ref_obs, atol=2e-4)
    np.testing.assert_array_equal(infos["problem_index"], ref_infos["problem_index"])
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(20):  # three episodes per row: resets with prompts of other lengths
        actions = rng.integers(0, vector.single_action_space.n, size=4)
        ours, theirs = vector.step(actions), reference.step(actions)
        _compare(ours, theirs)
        ended += int(np.sum(ours[2] | ours[3]))
    assert ended >= 8
    state = vector.unwrapped.decoding_state
    assert state.batch_size == 4 and not (state.attention_mask == 0).all(dim=0).any()  # compacted


def test_episodes_of_different_lengths_and_multi_token_feeds(speller, data_dir: Path) -> None:
    """Rows end at different steps (an answer, the limit); a finished row gets padding only."""
    model, spell = speller
    actions_a = spell(r"so \boxed{18}")
    vector = _make_vec(2, max_episode_steps=12, model=model, data_dir=str(data_dir))
    singles = [gym.make("CoLA-GSM8K-v0", model=model, data_dir=str(data_dir), max_episode_steps=12) for _ in range(2)]
    vector.reset(seed=0, options={"problem_index": 0})
    for env in singles:
        env.reset(options={"problem_index": 0})
    for step in range(12):
        row_actions = [actions_a[step] if step < len(actions_a) else 0, 1]
        rows = vector.step_rows(row_actions)
        for row, env in enumerate(singles):
            obs, reward, terminated, truncated, _ = env.step(row_actions[row])
            assert (rows[row].reward, rows[row].terminated, rows[row].truncated) == (reward, terminated, truncated)
            expected_obs = obs if not (terminated or truncated) else rows[row].final_observation
            np.testing.assert_allclose(expected_obs, obs, atol=2e-4)
            if terminated or truncated:
                env.reset()
        if step == len(actions_a) - 1:
            assert rows[0].terminated and rows[0].reward == 1.0 and rows[0].final_info["is_correct"]


def test_bad_actions_raise_before_anything_changes(tiny_cola_dir: Path, data_dir: Path) -> None:
    vector = _make_vec(3, model=str(tiny_cola_dir), data_dir=str(data_dir))
    vector.reset(seed=0)
    before = vector.decoding_state
    with pytest.raises(InvalidActionError):
        vector.step([1, 64, 2])
    with pytest.raises(ValueError, match="expected 3 actions"):
        vector.step([1, 2])
    assert vector.decoding_state is before
    vector.step([1, 2, 3])


def test_batched_prior_observations(tiny_cola_dir: Path, data_dir: Path) -> None:
    vector = _make_vec(2, model=str(tiny_cola_dir), data_dir=str(data_dir), observation="hidden+prior")
    obs, _ = vector.reset(seed=0)
    single = LatentActionEnv(vector.task, model=str(tiny_cola_dir), observation="hidden+prior")
    single_obs, _ = single.reset(seed=0)
    assert obs.shape == (2, 64 + 64)
    np.testing.assert_allclose(obs[0], single_obs, atol=2e-4)
    _, prior = vector.observation_layout.split(obs[0])
    assert prior is not None
    log_probs = torch.from_numpy(prior)
    assert torch.allclose(log_probs.exp().sum(), torch.tensor(1.0), atol=1e-4)


@pytest.mark.parametrize("env_id", ["CoLA-GSM8K-v0", "CoLA-GSM8K-Token-v0"])
def test_rows_with_the_same_prompt_share_one_prefill(
    env_id: str, tiny_cola_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs = {"model": str(tiny_cola_dir), "data_dir": str(data_dir), "max_episode_steps": 6}
    problems = [3, 3, 8, 3, 8]  # two groups of one problem each, as GRPO resets them
    vector = _make_vec(len(problems), env_id, **kwargs)
    prefilled: list[int] = []
    model = vector.stepper.model
    start, append = model.start, model.append

    def counting_start(ids: torch.Tensor, *args, **kw):
        prefilled.append(ids.shape[0])
        return start(ids, *args, **kw)

    def counting_append(state, ids: torch.Tensor, *args, **kw):
        prefilled.append(ids.shape[0])
        return append(state, ids, *args, **kw)

    monkeypatch.setattr(model, "start", counting_start)
    monkeypatch.setattr(model, "append", counting_append)
    obs, _ = vector.reset(options=[{"task_index": p} for p in problems])
    monkeypatch.setattr(model, "append", append)
    # one decoder row per distinct prompt (after, where the task's prompts share a prefix, one row for it)
    assert prefilled in ([2], [1, 2])
    singles = [gym.make(env_id, **kwargs) for _ in problems]
    ref_obs = np.stack([env.reset(options={"task_index": p})[0] for env, p in zip(singles, problems, strict=True)])
    np.testing.assert_allclose(obs, ref_obs, atol=2e-4)
    rng = np.random.default_rng(1)
    for _ in range(5):
        actions = rng.integers(0, vector.single_action_space.n, size=len(problems))
        obs, _, _, _, infos = vector.step(actions)
        steps = [env.step(int(a)) for env, a in zip(singles, actions, strict=True)]
        np.testing.assert_allclose(obs, np.stack([s[0] for s in steps]), atol=2e-4)
        assert list(infos["text"]) == [s[4]["text"] for s in steps]  # the same tokens, row by row


def test_a_prompt_seen_again_is_not_prefilled_again(tiny_cola_dir: Path, data_dir: Path) -> None:
    kwargs = {"model": str(tiny_cola_dir), "data_dir": str(data_dir), "max_episode_steps": 3}
    vector = _make_vec(2, **kwargs)
    prefilled: list[int] = []  # rows of each decoder pass of the resets
    model = vector.stepper.model
    start, append = model.start, model.append
    model.start = lambda ids, *a, **kw: prefilled.append(ids.shape[0]) or start(ids, *a, **kw)
    model.append = lambda state, ids, *a, **kw: prefilled.append(ids.shape[0]) or append(state, ids, *a, **kw)
    try:
        first, _ = vector.reset(options=[{"task_index": 4}, {"task_index": 5}])
        assert prefilled == [1, 2]  # the prompts' shared prefix once, then their two tails
        again, _ = vector.reset(options=[{"task_index": 5}, {"task_index": 6}])
        assert prefilled == [1, 2, 1]  # problem 5 came from the cache, problem 6 is a tail after the prefix
        np.testing.assert_allclose(again[0], first[1], atol=1e-6)
        vector.stepper.clear_prompt_cache()
        vector.reset(options={"task_index": 5})
        assert prefilled == [1, 2, 1, 1]  # forgotten: prefilled whole (one prompt says nothing of a prefix)
    finally:
        model.start, model.append = start, append


def test_autoreset_options_choose_what_a_row_plays_next(tiny_cola_dir: Path, data_dir: Path) -> None:
    kwargs = {"model": str(tiny_cola_dir), "data_dir": str(data_dir), "max_episode_steps": 2}
    vector = _make_vec(2, **kwargs)
    asked: list[int] = []
    vector.autoreset_options = lambda row: asked.append(row) or {"task_index": 10 + row}
    vector.reset(options={"task_index": 0})
    for _ in range(2):
        _, _, _, truncated, infos = vector.step(np.zeros(2, dtype=np.int64))
    assert truncated.all() and asked == [0, 1] and list(infos["task_index"]) == [10, 11]
    vector.autoreset_options = lambda row: {"no_such_option": 1}
    vector.step(np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="unknown reset option 'no_such_option'"):
        vector.step(np.zeros(2, dtype=np.int64))


@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "by-copy"])
@pytest.mark.parametrize("track_policy", [False, True], ids=["decoder", "decoder+policy"])
def test_a_feed_split_by_length_equals_one_padded_call(
    tiny_cola_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, in_place: bool, track_policy: bool
) -> None:
    """Two long feeds of different lengths, two short ones and an empty one: the split feed
    (short rows on the whole batch, then long rows on their rows only) decodes as one call does,
    now and after more feeds; in place, it keeps writing into the batch's arena."""
    from cola_gym.envs.stepper import SPLIT_FEED_WASTE
    from cola_gym.model import decoding

    vector = _make_vec(5, model=str(tiny_cola_dir), data_dir=str(data_dir), track_policy=track_policy)
    vector.reset(options=[{"task_index": i} for i in range(5)])
    stepper = vector.stepper
    state = stepper.feed(vector.decoding_state, [[3]] * 5)  # the batch's newest state, in an arena
    if not in_place:
        monkeypatch.setattr(decoding, "KV_IN_PLACE", False)
    message = list(range(300, 300 + SPLIT_FEED_WASTE))  # turns end with long messages
    feeds = [[17], message, [], message[:20], [42]]
    arena = state.arena
    split = stepper.feed(state, feeds)
    assert (split.arena is arena) == in_place
    padded = stepper._append(state, feeds)
    assert split.length == padded.length and torch.equal(split.attention_mask.sum(1), padded.attention_mask.sum(1))
    for a, b in [(split, padded), (stepper.feed(split, [[5]] * 5), stepper.feed(padded, [[5]] * 5))]:
        torch.testing.assert_close(a.hidden, b.hidden, atol=2e-4, rtol=0)
        if track_policy:
            torch.testing.assert_close(a.policy_logits, b.policy_logits, atol=2e-4, rtol=0)
        actions = torch.arange(5)
        assert stepper.model.next_tokens(a, actions).tolist() == stepper.model.next_tokens(b, actions).tolist()


def test_feeds_of_different_lengths_leave_no_padding_and_decode_as_padded_appends(
    tiny_cola_dir: Path, data_dir: Path
) -> None:
    """Feeds too small to split (one row gets 10 tokens, two get 1), a different row's turn ending
    each time: each row grows by its own feeds, the cache stays as wide as its longest row (a
    left-padded append would widen every row by 10 a feed), and every row decodes as the
    left-padded appends decode it."""
    from cola_gym.model.generation import left_pad

    vector = _make_vec(3, model=str(tiny_cola_dir), data_dir=str(data_dir))
    vector.reset(options=[{"task_index": i} for i in range(3)])
    stepper, ragged = vector.stepper, vector.decoding_state
    padded = ragged
    for turn in range(12):
        feeds = [[7], [8], [9]]
        feeds[turn % 3] = list(range(300, 310))
        ragged = stepper.feed(ragged, feeds)
        padded = stepper.model.append(padded, *left_pad(feeds))
    assert torch.equal(ragged.attention_mask.sum(1), padded.attention_mask.sum(1))
    assert ragged.length == int(ragged.ends.max()) <= vector.decoding_state.length + 4 * 10 + 8
    assert padded.length == vector.decoding_state.length + 12 * 10
    actions = torch.arange(3)
    for _ in range(3):
        torch.testing.assert_close(ragged.hidden, padded.hidden, atol=2e-4, rtol=0)
        a, ragged = stepper.model.step(ragged, actions)
        b, padded = stepper.model.step(padded, actions)
        assert a.tolist() == b.tolist()


def test_a_kept_prompt_does_not_keep_its_batch_alive(tiny_cola_dir: Path, data_dir: Path) -> None:
    vector = _make_vec(3, model=str(tiny_cola_dir), data_dir=str(data_dir))
    vector.reset(options=[{"task_index": i} for i in range(3)])
    batch_keys = vector.decoding_state.decoder_kv[0][0]
    kept = list(vector.stepper._prefilled.values())
    assert len(kept) == 3
    for state in kept:
        keys = state.decoder_kv[0][0]
        assert keys.shape[0] == 1 and keys.untyped_storage().data_ptr() != batch_keys.untyped_storage().data_ptr()
        assert keys.untyped_storage().nbytes() == keys.numel() * keys.element_size()  # its own row only


def test_prompts_sharing_the_tasks_prefix_prefill_only_their_tails(tiny_cola_dir: Path, data_dir: Path) -> None:
    from cola_gym.envs.stepper import MIN_SHARED_PREFIX

    shared = _make_vec(4, model=str(tiny_cola_dir), data_dir=str(data_dir), track_policy=True)
    plain = _make_vec(4, model=str(tiny_cola_dir), data_dir=str(data_dir), track_policy=True)
    plain.stepper.prompt_cache = 0  # every prompt prefilled whole
    for first in (0, 4, 8):  # later resets meet a known prefix
        options = [{"task_index": first + i} for i in range(4)]
        shared.reset(options=options)
        plain.reset(options=options)
        a, b = shared.decoding_state, plain.decoding_state
        torch.testing.assert_close(a.hidden, b.hidden, atol=2e-4, rtol=0)
        torch.testing.assert_close(a.policy_logits, b.policy_logits, atol=2e-4, rtol=0)
        assert torch.equal(a.attention_mask.sum(1), b.attention_mask.sum(1))
        for _ in range(3):
            actions = np.arange(4)
            shared.step(actions)
            plain.step(actions)
            assert [e.turn_ids for e in shared.episodes] == [e.turn_ids for e in plain.episodes]
    prefix = shared.stepper._prefix
    assert prefix is not None and len(prefix[0]) >= MIN_SHARED_PREFIX  # the chat template and instruction
    assert all(e.prompt_ids[: len(prefix[0])] == prefix[0] for e in shared.episodes)
