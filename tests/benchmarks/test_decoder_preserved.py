"""``benchmarks/decoder_preserved.py`` on tiny models: equal decoders measure equal, a different one does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def decoder_preserved(benchmark_script):
    return benchmark_script("decoder_preserved")


def test_same_decoder_same_numbers_other_decoder_other_numbers(
    decoder_preserved, tiny_decoder_dir: Path, tiny_cola_dir: Path, make_tiny_decoder, data_dir: Path, tmp_path: Path,
    capsys,
) -> None:  # fmt: skip
    other = make_tiny_decoder(seed=7)
    out = tmp_path / "preserved.json"
    models = [str(tiny_decoder_dir), str(tiny_cola_dir), str(other)]  # the CoLA model's heads differ, not its decoder
    decoder_preserved.main(["--models", *models, "--texts", "3", "--problems", "2", "--batch", "2", "--max-steps", "4",
                            "--data-dir", str(data_dir), "--out", str(out)])  # fmt: skip
    rows = list(json.loads(out.read_text())["models"].values())
    assert rows[0]["decoder_sha256"] == rows[1]["decoder_sha256"] != rows[2]["decoder_sha256"]
    assert rows[0]["held_out_perplexity"] == pytest.approx(rows[1]["held_out_perplexity"], rel=1e-6)
    assert rows[2]["held_out_perplexity"] != pytest.approx(rows[0]["held_out_perplexity"], rel=1e-3)
    assert rows[1]["same_decoder_as_first"] and not rows[2]["same_decoder_as_first"]
    assert all(len(row["reasoning_successes"]) == 2 and 0 <= row["reasoning_balanced_success"] <= 1 for row in rows)
    assert out.with_suffix(".png").is_file() and "held-out perplexity" in capsys.readouterr().out


def test_unknown_model_is_a_clear_error(decoder_preserved, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no model"):
        decoder_preserved.model_path(str(tmp_path / "missing"))
