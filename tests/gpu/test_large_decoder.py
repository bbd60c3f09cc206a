"""A Llama-3.1-8B-shaped decoder (random weights) in nf4 through the project's loader, and a
64-row vector env on it.

The weights are drawn on the device in bf16 (16 GB), written to a temporary directory and
loaded back with ``quantization="4bit"``: the whole path a user's 8B checkpoint takes. The
test needs about 20 GB of GPU memory, 16 GB of disk and 2 minutes.
"""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import cola_gym  # noqa: F401 - registers the ids
from cola_gym.envs import LatentActionVectorEnv
from cola_gym.model import CoLAConfig, CoLAModel, DecoderSettings, load_decoder

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

LLAMA_31_8B: dict[str, Any] = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}
ROWS, STEPS = 64, 16
GIB = 2**30


def _write_random_8b(tokenizer_dir: Path, path: Path) -> int:
    """Writes the random decoder and the SmolLM2 tokenizer to ``path``; returns the tokenizer's size.

    LM-head rows of ids the tokenizer lacks (49,152 and up) and of end-of-sequence are zero,
    so greedy tokens are always ones the env can spell and no episode ends early.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(**LLAMA_31_8B, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    with torch.random.fork_rng(devices=[torch.cuda.current_device()]), torch.device("cuda"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[len(tokenizer) :] = 0
        head[tokenizer.eos_token_id] = 0
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    del model, head
    gc.collect()
    torch.cuda.empty_cache()
    return len(tokenizer)


def test_llama_8b_shape_loads_in_nf4_and_runs_a_64_row_vector_env(
    tokenizer_dir: Path, tmp_path: Path, bnb, check_state
) -> None:
    path = tmp_path / "llama-3.1-8b-shape"
    try:
        started = time.perf_counter()
        vocabulary = _write_random_8b(tokenizer_dir, path)
        written = time.perf_counter()
        before = torch.cuda.memory_allocated()
        decoder, tokenizer = load_decoder(str(path), DecoderSettings(quantization="4bit", device="cuda"))
        loaded_gib = (torch.cuda.memory_allocated() - before) / GIB
        print(f"\nwritten in {written - started:.0f} s, loaded in {time.perf_counter() - written:.0f} s: "
              f"{loaded_gib:.2f} GiB on the device")  # fmt: skip
        # nf4: 6.98 B layer weights x 0.5625 bytes (4 bits + an fp32 scale per 64) = 3.7 GiB,
        # plus the bf16 embedding and LM head, 0.98 GiB each: 5.6 GiB
        assert 4.5 <= loaded_gib <= 7.0, f"the nf4 8B decoder takes {loaded_gib:.2f} GiB"
        linears = [m for m in decoder.get_decoder().layers.modules() if isinstance(m, nn.Linear)]
        assert len(linears) == 7 * 32 and {type(m).__name__ for m in linears} == {"Linear4bit"}
        assert all(m.compute_dtype == DecoderSettings(device="cuda").torch_dtype() for m in linears)
        assert type(decoder.get_output_embeddings()) is nn.Linear

        # one-block IDM and policy: the env steps through the decoder, the LM head and the merge only
        model = CoLAModel(CoLAConfig(idm_num_layers=1, policy_num_layers=1), decoder, tokenizer,
                          decoder_name_or_path=str(path))  # fmt: skip
        torch.cuda.reset_peak_memory_stats()
        vector = gym.make_vec("CoLA-Countdown-Easy-v0", num_envs=ROWS, vectorization_mode="vector_entry_point",
                              model=model).unwrapped  # fmt: skip
        assert isinstance(vector, LatentActionVectorEnv)
        obs, _ = vector.reset(seed=0)
        rng = np.random.default_rng(0)
        step_started = time.perf_counter()
        for _ in range(STEPS):
            obs, _, terminated, truncated, _ = vector.step(rng.integers(0, model.num_actions, size=ROWS))
            assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.shape == (ROWS, 4096)
            assert np.isfinite(obs).all()
        stepped = time.perf_counter() - step_started
        state = vector.decoding_state
        check_state(state, "64 rows after 16 steps")
        assert max(len(e.turn_ids) for e in vector.episodes) <= STEPS
        assert all(t < vocabulary for e in vector.episodes for t in e.turn_ids)
        print(f"{ROWS} rows x {STEPS} steps: {stepped / STEPS * 1e3:.1f} ms per step, "
              f"peak {torch.cuda.max_memory_allocated() / GIB:.1f} GiB, episodes ended: "
              f"{int(np.sum(terminated | truncated))}")  # fmt: skip
    finally:
        shutil.rmtree(path, ignore_errors=True)
