"""Stages 1a and 1b on a 4-bit decoder on the device, reading the hidden-state cache.

The data are Countdown demonstrations (procedural: no data files needed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from cola_gym.model import CoLAModel, DecoderSettings
from cola_gym.training import CoLATrainer, TextSource, TrainConfig, load_examples

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SEQ_LEN = 192
NF4 = DecoderSettings(quantization="4bit", device="cuda")


@pytest.fixture(scope="module")
def corpus(tokenizer_dir: Path) -> tuple[list[Any], list[Any]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    examples = load_examples([TextSource("countdown-easy:train", max_examples=56)], tokenizer, SEQ_LEN)
    return examples[:48], examples[48:]


def _config(stage: str, **kwargs: Any) -> TrainConfig:
    defaults = {"steps": 30, "batch_size": 4, "seq_len": SEQ_LEN, "learning_rate": 3e-3, "warmup_steps": 3,
                "log_every": 5, "checkpoint_every": 30}  # fmt: skip
    return TrainConfig(stage=stage, **{**defaults, **kwargs})  # type: ignore[arg-type]


def _heads(model: CoLAModel) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().clone() for n, p in model.heads().items() for k, v in p.state_dict().items()}


def _unchanged(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> list[str]:
    return [k for k in after if k.startswith(prefixes) and torch.equal(before[k], after[k])]


def _scalars(run_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _nf4_model(tiny_decoder_dir: Path) -> CoLAModel:
    model = CoLAModel.from_pretrained(str(tiny_decoder_dir), settings=NF4)
    assert type(model.decoder.get_decoder().layers[0].mlp.up_proj).__name__ == "Linear4bit"
    assert model.device.type == "cuda"
    return model


STAGE_1A = ("idm.", "codebook.", "world_model.")
STAGE_1B = ("policy.",)


def test_stages_1a_and_1b_train_on_a_4bit_decoder(tiny_decoder_dir: Path, corpus, tmp_path: Path, bnb) -> None:
    train, held_out = corpus
    model = _nf4_model(tiny_decoder_dir)
    start = _heads(model)
    metrics = CoLATrainer(model, _config("1a"), train, tmp_path / "1a", eval_examples=held_out,
                          show_progress=False).train()  # fmt: skip
    assert any((tmp_path / "hidden-cache").iterdir()), "stage 1a did not build the hidden-state cache"
    losses = _scalars(tmp_path / "1a")["train/loss/world_model_ce"]
    assert all(math.isfinite(x) for x in losses), losses
    assert losses[-1] < losses[0] - 0.3, losses
    assert metrics["loss/world_model_ce_idm_actions"] < metrics["loss/decoder_ce"] - 0.3, metrics
    after_1a = _heads(model)
    assert not _unchanged(start, after_1a, STAGE_1A), "head tensors stage 1a left unchanged"
    assert len(_unchanged(start, after_1a, STAGE_1B)) == len([k for k in start if k.startswith(STAGE_1B)])

    CoLATrainer(model, _config("1b"), train, tmp_path / "1b", eval_examples=held_out, show_progress=False).train()
    losses = _scalars(tmp_path / "1b")["train/loss/behaviour_cloning"]
    assert losses[-1] < losses[0] - 0.4, losses
    after_1b = _heads(model)
    assert not _unchanged(after_1a, after_1b, STAGE_1B), "policy tensors stage 1b left unchanged"
    assert len(_unchanged(after_1a, after_1b, STAGE_1A)) == len([k for k in start if k.startswith(STAGE_1A)])

    # save / load round trip: the same heads, and the same decoding
    loaded = CoLAModel.from_pretrained(tmp_path / "1b" / "final", settings=NF4)
    reloaded = _heads(loaded)
    assert set(reloaded) == set(after_1b)
    assert all(reloaded[k].dtype == v.dtype and torch.equal(reloaded[k], v) for k, v in after_1b.items())
    prompt = torch.tensor([model.tokenizer("Numbers: 3 5 2. Target: 16.")["input_ids"]])
    actions = torch.tensor([[5], [17], [40], [2]])
    trained, again = model.start(prompt, track_policy=True), loaded.start(prompt, track_policy=True)
    for action in actions:
        token, trained = model.step(trained, action)
        token_again, again = loaded.step(again, action)
        assert int(token) == int(token_again)
    assert torch.allclose(trained.hidden.float(), again.hidden.float(), atol=1e-2)
    assert trained.policy_logits is not None and again.policy_logits is not None
    assert torch.allclose(trained.policy_logits.float(), again.policy_logits.float(), atol=1e-2)


def test_every_head_tensor_learns_at_the_stage_learning_rate(
    tiny_decoder_dir: Path, corpus, tmp_path: Path, bnb
) -> None:
    """Stage 1a at its own learning rate (1e-4 after warm-up, towards 4e-5): every tensor it trains
    changes while it trains.

    Adam moves a weight by about the learning rate per step. Near 1 (the RMSNorm weights of the
    IDM blocks) bf16's spacing is 2**-8 to 2**-7, so a 1e-4 step rounds away: heads trained in
    bf16 without float32 master weights keep those weights exactly. The weights are compared as
    the training forward passes see them, at the first step and at the last (after 19 updates):
    20 steps move a weight by at most about 2e-3, which casting the trained heads back to bf16
    may round away again, so the weights ``train()`` leaves are not the evidence.
    """
    train, _ = corpus
    model = _nf4_model(tiny_decoder_dir)
    trained = {name: part for name, part in model.heads().items() if name + "." in STAGE_1A}
    seen: dict[str, Any] = {"dtypes": set()}

    def snapshot(module: torch.nn.Module, args: Any) -> None:
        if not torch.is_grad_enabled():  # evaluation passes run without gradients
            return
        weights = {
            f"{n}.{k}": v.detach().float().clone() for n, p in trained.items() for k, v in p.state_dict().items()
        }
        seen.setdefault("first", weights)
        seen["last"] = weights
        seen["dtypes"].update(str(p.dtype) for part in trained.values() for p in part.parameters())

    config = TrainConfig(stage="1a", steps=20, batch_size=4, seq_len=SEQ_LEN, warmup_steps=2, log_every=10,
                         checkpoint_every=20)  # fmt: skip
    handle = model.idm.trunk.register_forward_pre_hook(snapshot)
    try:
        CoLATrainer(model, config, train, tmp_path / "1a", show_progress=False).train()
    finally:
        handle.remove()
    first, last = seen["first"], seen["last"]
    frozen = [k for k in first if torch.equal(first[k], last[k])]
    assert not frozen, (
        f"heads trained in {sorted(seen['dtypes'])}; unchanged after 19 updates at lr "
        f"{config.peak_learning_rate:g}: {frozen}"
    )
