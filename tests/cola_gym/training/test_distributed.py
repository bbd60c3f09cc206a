"""``cola-gym train`` from the command line, alone and as a 2-process torchrun job (gloo, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym

from cola_agents.cli import main


def _train_args(decoder: Path, out: Path, data_dir: Path, stage: str = "1a") -> list[str]:
    return [
        "train", "--stage", stage, "--model", str(decoder), "--data", "gsm8k:train", "--max-examples", "16",
        "--eval-data", "gsm8k:test", "--eval-examples", "4", "--data-dir", str(data_dir), "--out", str(out),
        "--steps", "4", "--batch-size", "2", "--seq-len", "96", "--lr", "1e-3", "--warmup-steps", "1",
        "--log-every", "2", "--checkpoint-every", "2", "--device", "cpu",
    ]  # fmt: skip


def test_train_command_writes_a_model_with_its_card(
    tiny_decoder_dir: Path, data_dir: Path, tmp_path: Path, capsys
) -> None:
    assert main(_train_args(tiny_decoder_dir, tmp_path / "1a", data_dir)) == 0
    final = tmp_path / "1a" / "final"
    assert f"trained model: {tmp_path / '1a'}/final" in capsys.readouterr().out
    card = (final / "README.md").read_text()
    assert "cola-gym train --stage 1a" in card and "gsm8k:train (first 16)" in card
    assert main(_train_args(final, tmp_path / "1b", data_dir, stage="1b")) == 0
    history = json.loads((tmp_path / "1b" / "final" / "training.json").read_text())
    assert [h["stage"] for h in history] == ["1a", "1b"]  # the card tells the whole pipeline
    assert main(["export", "--model", str(tmp_path / "1b" / "final"), "--out", str(tmp_path / "small")]) == 0
    small = tmp_path / "small"
    assert (small / "README.md").is_file()
    assert (small / "cola_heads.safetensors").stat().st_size < 0.6 * (final / "cola_heads.safetensors").stat().st_size


def test_two_process_run_trains_and_loads_into_the_env(tiny_decoder_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "cola_agents.cli", *_train_args(tiny_decoder_dir, out, data_dir)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    errors = [line for line in result.stderr.splitlines() if "Error" in line]  # each rank's own failure
    assert result.returncode == 0, "\n".join(errors[:20]) + "\n...\n" + result.stderr[-2000:]
    assert (out / "latest").read_text().strip() == "step-000004"
    progress = sorted(p.name for p in (tmp_path / "hidden-cache").glob("*/progress-rank*"))
    assert progress == ["progress-rank0-of-2.json", "progress-rank1-of-2.json"]  # both processes cached states
    env_ = gym.make("CoLA-GSM8K-v0", model=str(out / "final"), data_dir=str(data_dir))
    env_.reset(seed=0)
    _, _, _, _, info = env_.step(3)
    assert info["num_tokens"] == 1
    trained = env_.unwrapped.model
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in (out / "final").iterdir())
    assert trained.world_model.layers[0].down_proj.weight.abs().sum() > 0  # stage 1a moved the zero-init merge
