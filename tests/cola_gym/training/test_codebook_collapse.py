"""Stage 1a's options against codebook collapse, on a tiny model whose codebook has collapsed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cola_gym.model import CoLAModel
from cola_gym.training import CoLATrainer, TextSource, TrainConfig, load_examples
from cola_gym.training.objectives import evaluate_examples
from cola_gym.training.stages import code_usage_loss

SEQ_LEN = 96


@pytest.fixture(scope="module")
def corpus(tiny_decoder_dir: Path, data_dir: Path):
    tokenizer = CoLAModel.from_pretrained(str(tiny_decoder_dir)).tokenizer
    train = load_examples([TextSource("gsm8k:train", max_examples=32)], tokenizer, SEQ_LEN, data_dir)
    held_out = load_examples([TextSource("gsm8k:test", max_examples=8)], tokenizer, SEQ_LEN, data_dir)
    return train, held_out


def _collapsed(tiny_decoder_dir: Path) -> CoLAModel:
    """Fresh heads whose IDM uses two codes of 64, saturated: read-out rows 0 and 1 are +-1000 v
    for a random direction v, the others 0, so Gumbel noise never picks another code."""
    model = CoLAModel.from_pretrained(str(tiny_decoder_dir))
    weight = model.idm.out.weight
    direction = torch.randn(weight.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        weight.zero_()
        weight[0] = 1000.0 * direction / direction.norm()
        weight[1] = -weight[0]
    return model


def _alive(model: CoLAModel, held_out) -> float:
    return evaluate_examples(model, held_out)["codes/alive"]


def _train(model: CoLAModel, train, run: Path, **options) -> None:
    config = TrainConfig(stage="1a", steps=30, batch_size=4, seq_len=SEQ_LEN, learning_rate=3e-3, warmup_steps=2,
                         log_every=10, checkpoint_every=30, use_hidden_cache=False, **options)  # fmt: skip
    CoLATrainer(model, config, train, run, show_progress=False).train()


def test_a_collapsed_codebook_revives_with_the_options(tiny_decoder_dir: Path, corpus, tmp_path: Path) -> None:
    train, held_out = corpus
    assert _alive(_collapsed(tiny_decoder_dir), held_out) <= 2
    plain = _collapsed(tiny_decoder_dir)
    _train(plain, train, tmp_path / "plain", code_usage_weight=0.0, dead_code_steps=0)
    revived = _collapsed(tiny_decoder_dir)
    _train(revived, train, tmp_path / "revived", code_usage_weight=1.0, dead_code_steps=3)
    before, after = _alive(plain, held_out), _alive(revived, held_out)
    assert before <= 5 and after >= 16, (before, after)  # plain training stays collapsed; the options revive


def test_restarts_are_logged_and_resume_exactly(tiny_decoder_dir: Path, corpus, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train, _ = corpus
    options = {"code_usage_weight": 0.5, "dead_code_steps": 3}
    config = TrainConfig(stage="1a", steps=20, batch_size=4, seq_len=SEQ_LEN, learning_rate=3e-3, warmup_steps=2,
                         log_every=5, checkpoint_every=10, use_hidden_cache=False, **options)  # fmt: skip
    interrupted = _collapsed(tiny_decoder_dir)
    CoLATrainer(interrupted, config, train, tmp_path / "resumed", show_progress=False).train(until_step=10)
    resumed = _collapsed(tiny_decoder_dir)
    CoLATrainer(resumed, config, train, tmp_path / "resumed", show_progress=False).train()
    reference = _collapsed(tiny_decoder_dir)
    CoLATrainer(reference, config, train, tmp_path / "reference", show_progress=False).train()
    for a, b in zip(reference.idm.parameters(), resumed.idm.parameters(), strict=True):
        assert torch.equal(a, b)
    events = EventAccumulator(str(tmp_path / "reference" / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/codes/restarts", "train/codes/alive", "train/codes/perplexity", "train/loss/code_usage"} <= set(tags)
    assert sum(e.value for e in events.Scalars("train/codes/restarts")) > 0


def test_the_usage_term_is_zero_only_for_sharp_uniform_usage() -> None:
    sharp_uniform = torch.eye(4) * 30.0
    assert float(code_usage_loss(sharp_uniform)) == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.zeros(4, 4)
    collapsed[:, 0] = 30.0
    assert float(code_usage_loss(collapsed)) == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=1e-4)
    flat = torch.zeros(4, 4)  # uniform usage but no choice made: penalised as well
    assert float(code_usage_loss(flat)) == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=1e-4)
