"""The envs on the device: the vector env against single envs, the token twins' prior, syncs per step.

The model is the tiny CoLA checkpoint loaded with ``device="cuda"`` (bf16). A batched row and a
single env run different kernels, which round differently in bf16: observations are compared
with tolerances, tokens by agreement rate.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.envs import LatentActionVectorEnv
from cola_gym.envs.observation import PRIOR_FLOOR
from cola_gym.model import CoLAModel

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ENV_ID = "CoLA-Countdown-Easy-v0"
TOKEN_ENV_ID = "CoLA-Countdown-Easy-Token-v0"


def _vector(env_id: str, num_envs: int, **kwargs: Any) -> LatentActionVectorEnv:
    vector = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    assert isinstance(vector.unwrapped, LatentActionVectorEnv)
    return vector.unwrapped


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def _check_observations(obs: Any, space: gym.Space, rows: int) -> None:
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32, (type(obs), getattr(obs, "dtype", None))
    assert space.shape is not None and obs.shape == (rows, *space.shape) and np.isfinite(obs).all()
    assert all(space.contains(row) for row in obs), "an observation left the space's exact bounds"


def test_vector_env_matches_single_envs(cuda_cola_dir: Path, check_state) -> None:
    """16 rows against 16 single envs, same seeds and actions, for 48 steps of 10-step episodes.

    A row whose text differs from its single env's is counted as one disagreement and then left
    out (its episode, and so the following ones, are other texts from there on); the rest must
    agree on >= 98 % of the tokens, with autoresets in the same steps and the same new episodes.
    """
    rows, steps, limit = 16, 48, 10
    kwargs: dict[str, Any] = {"model": str(cuda_cola_dir), "device": "cuda", "max_episode_steps": limit}
    vector = _vector(ENV_ID, rows, **kwargs)
    singles = [gym.make(ENV_ID, **kwargs) for _ in range(rows)]
    obs, infos = vector.reset(seed=5)
    _check_observations(obs, vector.single_observation_space, rows)
    for row, env in enumerate(singles):
        single_obs, single_info = env.reset(seed=5 + row)
        assert single_info["task_index"] == infos["task_index"][row]
        assert _cosine(obs[row], single_obs) > 0.999
    rng = np.random.default_rng(0)
    in_step = [True] * rows
    compared = agreed = ended = 0
    for _ in range(steps):
        actions = rng.integers(0, vector.stepper.num_actions, size=rows)
        results = vector.step_rows(actions)
        _check_observations(np.stack([r.observation for r in results]), vector.single_observation_space, rows)
        for row, (env, result) in enumerate(zip(singles, results, strict=True)):
            if not in_step[row]:
                continue
            single_obs, reward, terminated, truncated, single_info = env.step(actions[row])
            finished = result.final_observation is not None
            info = result.final_info if finished else result.info
            assert info is not None
            compared += 1
            if info["text"] != single_info["text"] or finished != (terminated or truncated):
                in_step[row] = False  # another text from here on
                continue
            agreed += 1
            assert (result.reward, result.terminated, result.truncated) == (reward, terminated, truncated)
            last_obs = result.final_observation if finished else result.observation
            assert last_obs is not None and _cosine(last_obs, single_obs) > 0.99
            if finished:  # same-step autoreset: the row already plays the next episode
                ended += 1
                new_obs, new_info = env.reset()
                assert result.info["task_index"] == new_info["task_index"] and result.info["text"] == ""
                assert _cosine(result.observation, new_obs) > 0.999
    rate = agreed / compared
    print(f"\ntoken agreement {rate:.4f} over {compared} row-steps, {rows - sum(in_step)} rows diverged, "
          f"{ended} autoresets compared")  # fmt: skip
    assert rate >= 0.98, f"the vector env and the single envs agree on {rate:.2%} of the tokens"
    assert compared >= rows * steps // 2, "most rows diverged early: too few tokens compared"
    assert ended >= rows, "too few episodes ended (and restarted) in step with the single envs"
    state = vector.decoding_state
    assert state is not None and state.batch_size == rows
    check_state(state, "vector env after autoresets")
    assert not (state.attention_mask == 0).all(dim=0).any(), "a padding column every row shares was kept"


def test_token_twin_prior_batched_equals_per_row(cuda_cola_dir: Path, cuda_model: CoLAModel) -> None:
    """The decoder's next-token log-probabilities (``observation="hidden+prior"``) of 6 rows: one batched
    LM head and log-softmax on the device, against the same rows one at a time and against single envs."""
    rows = 6
    kwargs: dict[str, Any] = {"model": str(cuda_cola_dir), "device": "cuda", "observation": "hidden+prior",
                              "max_episode_steps": 32}  # fmt: skip
    vector = _vector(TOKEN_ENV_ID, rows, **kwargs)
    singles = [gym.make(TOKEN_ENV_ID, **kwargs) for _ in range(rows)]
    layout = vector.observation_layout
    assert layout.prior == len(cuda_model.tokenizer) and layout.hidden == cuda_model.hidden_size
    obs, _ = vector.reset(seed=11)
    single_obs = [env.reset(seed=11 + row)[0] for row, env in enumerate(singles)]
    rng = np.random.default_rng(0)
    first_plain_id = max(cuda_model.tokenizer.all_special_ids) + 1
    for step in range(6):
        _check_observations(obs, vector.single_observation_space, rows)
        hidden, prior = layout.split(obs)
        assert prior is not None and (prior >= PRIOR_FLOOR).all()
        normaliser = np.log(np.exp(prior.astype(np.float64)).sum(-1))
        assert np.abs(normaliser).max() < 1e-3, f"step {step}: log-probabilities sum to {normaliser}"
        state = vector.decoding_state
        assert state is not None
        per_row = np.stack([vector.stepper.observation(state, row) for row in range(rows)])
        np.testing.assert_allclose(per_row[:, layout.hidden :], prior, atol=1e-2, err_msg=f"step {step}")
        np.testing.assert_allclose(per_row[:, : layout.hidden], hidden, atol=5e-2, err_msg=f"step {step}")
        alone = np.stack(single_obs)
        np.testing.assert_allclose(alone[:, layout.hidden :], prior, atol=1e-2, err_msg=f"step {step}: single envs")
        np.testing.assert_allclose(alone[:, : layout.hidden], hidden, atol=5e-2, err_msg=f"step {step}: single envs")
        actions = rng.integers(first_plain_id, 30_000, size=rows)  # ordinary tokens: no episode ends here
        obs, _, terminated, truncated, _ = vector.step(actions)
        assert not (terminated | truncated).any()
        single_obs = [env.step(int(action))[0] for env, action in zip(singles, actions, strict=True)]


# Device syncs of one vector step (latent actions, observation "hidden", no tracked heads, every row
# fed one token), read from the code. Sync debug mode also counts blocking host->device copies:
#   1 cola_gym/model/cola.py, next_token_logits: actions.to(device)              host -> device
#   2 cola_gym/envs/stepper.py, step: the tokens' .tolist()                      device -> host
#   3 transformers' masking_utils._ignore_causal_mask_sdpa: `if ... fast_all(padding_mask)`, a device
#     bool read on the host (once per decoder call; once more per tracked head)
#   4 cola_gym/envs/stepper.py, observations: .to("cpu")                         device -> host
# The new tokens go back into the decoder from the device (no copy of ids or mask), and the rows'
# lengths are counted on the host (Episode.positions).
VECTOR_STEP_SYNCS = 4
# A bare CoLAModel.step with the actions already on the device: only (5).
MODEL_STEP_SYNCS = 1


def _count_syncs(run: Any) -> tuple[int, Counter[str]]:
    """Syncs ``run()`` makes (``torch.cuda.set_sync_debug_mode("warn")``), and where they come from."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    return len(syncs), Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)


def test_device_syncs_per_vector_step(cuda_cola_dir: Path, cuda_model: CoLAModel) -> None:
    rows = 8
    vector = _vector(ENV_ID, rows, model=str(cuda_cola_dir), device="cuda")
    vector.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(2):  # warm-up: lazy initialisations are not what a step costs
        vector.step(rng.integers(0, vector.stepper.num_actions, size=rows))
    steady: list[int] = []
    sources: Counter[str] = Counter()
    restarts: list[int] = []
    for _ in range(12):
        outcome: dict[str, Any] = {}
        actions = rng.integers(0, vector.stepper.num_actions, size=rows)
        count, where = _count_syncs(lambda a=actions, o=outcome: o.update(result=vector.step(a)))
        _, _, terminated, truncated, _ = outcome["result"]
        if (terminated | truncated).any():
            restarts.append(count)  # prefill, prompt-cache copies and row splicing: not a steady step
        else:
            steady.append(count)
            sources.update(where)
    print(f"\nsyncs per steady vector step: {steady}; steps with autoresets: {restarts}")
    print("sources:", dict(sources.most_common()))
    assert len(steady) >= 6, "too many steps restarted an episode to measure steady steps"
    assert max(steady) <= VECTOR_STEP_SYNCS, f"{max(steady)} syncs in one vector step: {dict(sources)}"

    state = cuda_model.start(torch.tensor([cuda_model.tokenizer("Count the syncs")["input_ids"]]), track_policy=False)
    codes = torch.randint(0, cuda_model.num_actions, (8, 1), device="cuda")
    for action in codes[:2]:
        _, state = cuda_model.step(state, action)
    holder = {"state": state}

    def bare_steps() -> None:
        for action in codes[2:]:
            _, holder["state"] = cuda_model.step(holder["state"], action)

    count, where = _count_syncs(bare_steps)
    print(f"syncs per bare CoLAModel.step: {count / 6:.2f} ({dict(where)})")
    assert count <= MODEL_STEP_SYNCS * 6, dict(where)
