"""Each training stage on a tiny model: the loss falls, resume is exact, artefacts are written."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from cola_gym.errors import CheckpointError
from cola_gym.model import CoLAModel
from cola_gym.training import CoLATrainer, TextSource, TrainConfig, load_examples
from cola_gym.training.hidden_cache import HiddenStateCache

SEQ_LEN = 128


@pytest.fixture(scope="module")
def corpus(tiny_decoder_dir: Path, data_dir: Path):
    tokenizer = CoLAModel.from_pretrained(str(tiny_decoder_dir)).tokenizer
    train = load_examples([TextSource("gsm8k:train", max_examples=48)], tokenizer, SEQ_LEN, data_dir)
    held_out = load_examples([TextSource("gsm8k:test", max_examples=8)], tokenizer, SEQ_LEN, data_dir)
    return train, held_out


@pytest.fixture(scope="module")
def stage_1a_dir(tiny_decoder_dir: Path, corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model after a short stage 1a + 1b: the starting point of stage 2."""
    train, _ = corpus
    run = tmp_path_factory.mktemp("pretrained")
    model = CoLAModel.from_pretrained(str(tiny_decoder_dir))
    CoLATrainer(model, _config("1a", steps=10), train, run / "1a", show_progress=False).train()
    CoLATrainer(model, _config("1b", steps=10), train, run / "1b", show_progress=False).train()
    return run / "1b" / "final"


def _config(stage: str, **kwargs) -> TrainConfig:
    defaults = {
        "steps": 30,
        "batch_size": 4,
        "seq_len": SEQ_LEN,
        "learning_rate": 3e-3,
        "warmup_steps": 3,
        "log_every": 5,
        "checkpoint_every": 10,
    }
    return TrainConfig(stage=stage, **{**defaults, **kwargs})  # type: ignore[arg-type]


def _heads(model: CoLAModel) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n, p in model.heads().items() for k, v in p.state_dict().items()}


def _scalars(run_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_stage_1a_learns_a_latent_action_space(tiny_decoder_dir: Path, corpus, tmp_path: Path) -> None:
    train, held_out = corpus
    model = CoLAModel.from_pretrained(str(tiny_decoder_dir))
    trainer = CoLATrainer(model, _config("1a"), train, tmp_path / "1a", eval_examples=held_out, show_progress=False)
    metrics = trainer.train()
    scalars = _scalars(tmp_path / "1a")
    losses = scalars["train/loss/world_model_ce"]
    assert losses[-1] < losses[0] - 0.3, losses
    for tag in (
        "codes/alive",
        "codes/top_share",
        "codes/perplexity",
        "acc/world_model_idm_actions",
        "acc/world_model_policy_actions",
        "acc/decoder",
        "learning_rate",
        "speed/tokens_per_s",
    ):
        assert f"train/{tag}" in scalars, tag
    # the action now carries information about the next token: better than the bare decoder
    assert metrics["loss/world_model_ce_idm_actions"] < metrics["loss/decoder_ce"] - 0.3
    assert metrics["codes/alive"] > 4
    final = tmp_path / "1a" / "final"
    card = (final / "README.md").read_text()
    assert "stage 1a" in card and "acc/world_model_idm_actions" in card
    assert json.loads((final / "training.json").read_text())[-1]["seed"] == 0


def test_stage_1b_clones_the_idm_and_loads_into_the_env(
    tiny_decoder_dir: Path, corpus, tmp_path: Path, data_dir: Path
) -> None:
    train, held_out = corpus
    model = CoLAModel.from_pretrained(str(tiny_decoder_dir))
    CoLATrainer(model, _config("1a", steps=10), train, tmp_path / "1a", show_progress=False).train()
    idm_before = _heads(model)
    CoLATrainer(model, _config("1b"), train, tmp_path / "1b", eval_examples=held_out, show_progress=False).train()
    after = _heads(model)
    assert all(torch.equal(idm_before[k], after[k]) for k in after if not k.startswith("policy."))
    losses = _scalars(tmp_path / "1b")["train/loss/behaviour_cloning"]
    assert losses[-1] < losses[0] - 0.4, losses
    env = gym.make("CoLA-GSM8K-v0", model=str(tmp_path / "1b" / "final"), data_dir=str(data_dir), track_policy=True)
    env.reset(seed=0)
    assert torch.equal(env.unwrapped.model.policy.out.weight, model.policy.out.weight)
    env.step(int(env.unwrapped.decoding_state.policy_logits.argmax()))


@pytest.mark.parametrize("lora_rank", [0, 4])
@pytest.mark.parametrize("fta_actions", ["idm", "policy"])
def test_stage_2_fine_tunes_the_decoder_under_fixed_actions(
    stage_1a_dir: Path, corpus, tmp_path: Path, lora_rank: int, fta_actions: str
) -> None:
    train, _ = corpus
    model = CoLAModel.from_pretrained(stage_1a_dir)
    heads_before = _heads(model)
    config = _config("2", steps=12, learning_rate=1e-3, lora_rank=lora_rank, fta_actions=fta_actions)
    CoLATrainer(model, config, train, tmp_path / "2", show_progress=False).train()
    losses = _scalars(tmp_path / "2")["train/loss/fta_ce"]
    assert losses[-1] < losses[0], losses
    assert all(torch.equal(heads_before[k], v) for k, v in _heads(model).items()), "stage 2 trains the decoder only"
    final = tmp_path / "2" / "final"
    assert (final / ("decoder_adapter" if lora_rank else "decoder")).is_dir()
    loaded = CoLAModel.from_pretrained(final)
    prompt = torch.tensor([model.tokenizer("Fine-tuned decoding")["input_ids"]])
    model.eval()
    with torch.no_grad():
        expected = model.hidden_states(prompt)
        actual = loaded.hidden_states(prompt)
    assert torch.allclose(expected, actual, atol=1e-4)


def test_a_lora_checkpoint_keeps_its_adapter_through_later_stages_and_export(
    stage_1a_dir: Path, corpus, tmp_path: Path
) -> None:
    train, _ = corpus
    model = CoLAModel.from_pretrained(stage_1a_dir)
    CoLATrainer(model, _config("2", steps=6, learning_rate=1e-2, lora_rank=4), train, tmp_path / "2",
                show_progress=False).train()  # fmt: skip
    tuned = CoLAModel.from_pretrained(tmp_path / "2" / "final")  # the adapter is merged in on loading
    prompt = torch.tensor([tuned.tokenizer("Fine-tuned decoding")["input_ids"]])
    with torch.no_grad():
        expected = tuned.hidden_states(prompt)
        assert not torch.allclose(expected, CoLAModel.from_pretrained(stage_1a_dir).hidden_states(prompt), atol=1e-3)
    CoLATrainer(tuned, _config("1b", steps=2), train, tmp_path / "1b", show_progress=False).train()
    tuned.save_pretrained(tmp_path / "export", dtype=torch.bfloat16)  # what `cola-gym export` writes
    for saved in (tmp_path / "1b" / "final", tmp_path / "export"):
        assert (saved / "decoder_adapter" / "adapter_config.json").is_file(), saved
        with torch.no_grad():
            actual = CoLAModel.from_pretrained(saved).hidden_states(prompt)
        assert torch.allclose(expected, actual, atol=0.05 if saved.name == "export" else 1e-5), saved
    (tmp_path / "1b" / "final" / "decoder_adapter" / "adapter_config.json").unlink()
    with pytest.raises(CheckpointError, match=r"no adapter_config\.json"):
        CoLAModel.from_pretrained(tmp_path / "1b" / "final")


@pytest.mark.parametrize("stage", ["1a", "2"])
def test_resume_is_exact(stage_1a_dir: Path, corpus, tmp_path: Path, stage: str) -> None:
    train, _ = corpus
    config = _config(stage, steps=8, checkpoint_every=4, lora_rank=4 if stage == "2" else 0, learning_rate=1e-3)
    straight = CoLAModel.from_pretrained(stage_1a_dir)
    CoLATrainer(straight, config, train, tmp_path / "straight", show_progress=False).train()

    interrupted = CoLAModel.from_pretrained(stage_1a_dir)
    CoLATrainer(interrupted, config, train, tmp_path / "resumed", show_progress=False).train(until_step=6)
    half_written = tmp_path / "resumed" / "checkpoints" / ".tmp-left-by-a-kill"  # as a kill leaves it
    half_written.mkdir()
    (half_written / "cola_heads.safetensors").write_bytes(b"\0" * 100)
    resumed = CoLAModel.from_pretrained(stage_1a_dir)  # a fresh process: weights from the checkpoint at step 4
    CoLATrainer(resumed, config, train, tmp_path / "resumed", show_progress=False).train()
    assert not half_written.exists()

    expected, actual = _heads(straight), _heads(resumed)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    for a, b in zip(straight.decoder.parameters(), resumed.decoder.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_different_run_in_the_same_directory_is_refused(tiny_cola_dir: Path, corpus, tmp_path: Path) -> None:
    train, _ = corpus
    model = CoLAModel.from_pretrained(tiny_cola_dir)
    CoLATrainer(model, _config("1b", steps=2), train, tmp_path / "run", show_progress=False).train()
    with pytest.raises(CheckpointError, match="different config"):
        CoLATrainer(model, _config("1b", steps=3), train, tmp_path / "run", show_progress=False).train()


def test_starting_and_resuming_a_run_pass_the_same_barriers(tiny_cola_dir: Path, corpus, tmp_path: Path) -> None:
    """In a multi-process run, a process that finds ``run.json`` already written must not skip a barrier."""
    from accelerate import Accelerator

    class CountingAccelerator(Accelerator):
        barriers = 0

        def wait_for_everyone(self) -> None:
            CountingAccelerator.barriers += 1
            super().wait_for_everyone()

    train, _ = corpus
    model = CoLAModel.from_pretrained(tiny_cola_dir)
    trainer = CoLATrainer(model, _config("1b", steps=2), train, tmp_path / "run",
                          accelerator=CountingAccelerator(cpu=True), show_progress=False)  # fmt: skip
    trainer._check_run_dir()
    starting = CountingAccelerator.barriers
    assert (tmp_path / "run" / "run.json").is_file()
    trainer._check_run_dir()
    assert CountingAccelerator.barriers - starting == starting


def test_hidden_cache_holds_the_decoder_states_and_is_reused(tiny_cola: CoLAModel, corpus, tmp_path: Path) -> None:
    train, _ = corpus
    cache = HiddenStateCache.build(tiny_cola, train[:10], tmp_path, batch_size=3, show_progress=False)
    ids, hidden, start = cache.example(7)
    assert ids.tolist() == train[7].ids.tolist() and start == train[7].response_start
    with torch.no_grad():
        expected = tiny_cola.hidden_states(torch.tensor([ids.tolist()]))[0].numpy()
    assert np.allclose(hidden.astype(np.float32), expected, atol=2e-2, rtol=2e-3)  # float16 storage
    stamp = (cache.path / "hidden.f16").stat().st_mtime_ns
    again = HiddenStateCache.build(tiny_cola, train[:10], tmp_path, batch_size=3, show_progress=False)
    assert again.path == cache.path and (cache.path / "hidden.f16").stat().st_mtime_ns == stamp
    other = HiddenStateCache.build(tiny_cola, train[:9], tmp_path, batch_size=3, show_progress=False)
    assert other.path != cache.path  # another corpus, another cache


def test_a_bf16_model_trains_fp32_master_weights_so_small_updates_are_kept(
    tiny_decoder_dir: Path, corpus, tmp_path: Path
) -> None:
    """At stage-1 learning rates an AdamW step is below half a bf16 weight's last unit: heads kept
    in bf16 would not move. The trainer keeps fp32 master weights (what its checkpoints hold), and
    they move as far as in an fp32 run; the model is back in bf16 for use afterwards."""
    from safetensors.torch import load_file

    from cola_gym.model import DecoderSettings
    from cola_gym.model.checkpoint import HEADS_FILE
    from cola_gym.training.state import latest_checkpoint

    train, _ = corpus
    config = _config("1a", steps=8, learning_rate=1e-5, warmup_steps=0)
    moved = {}
    for dtype in ("float32", "bfloat16"):
        settings = DecoderSettings(device="cpu", dtype=dtype)
        model = CoLAModel.from_pretrained(str(tiny_decoder_dir), settings=settings)
        before = {k: v.float() for k, v in _heads(model).items()}
        CoLATrainer(model, config, train, tmp_path / dtype, show_progress=False).train()
        assert all(v.dtype == getattr(torch, dtype) for v in _heads(model).values()), "used in its dtype after"
        checkpoint = latest_checkpoint(tmp_path / dtype)
        assert checkpoint is not None
        master = load_file(str(checkpoint / HEADS_FILE))
        assert all(v.dtype == torch.float32 for v in master.values())
        moved[dtype] = {k: float((master[k] - before[k]).norm()) for k in before if k in master}
    trained = [k for k, v in moved["float32"].items() if v > 0]
    assert len(trained) > 10
    for key in trained:
        assert moved["bfloat16"][key] > 0.7 * moved["float32"][key], (key, moved)


def test_a_quantized_decoder_trains_adapters_only(tiny_decoder_dir: Path, corpus, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    from cola_gym.model import DecoderSettings

    train, _ = corpus
    settings = DecoderSettings(device="cpu", quantization="4bit")
    model = CoLAModel.from_pretrained(str(tiny_decoder_dir), settings=settings)
    for stage in ("2", "lm"):
        with pytest.raises(ValueError, match=r"quantized to 4 bits.*--lora-rank"):
            CoLATrainer(model, _config(stage, steps=2), train, tmp_path / stage, show_progress=False).train()
    config = _config("2", steps=4, learning_rate=1e-2, lora_rank=4)
    CoLATrainer(model, config, train, tmp_path / "qlora", show_progress=False).train()
    assert (tmp_path / "qlora" / "final" / "decoder_adapter").is_dir()
    adapters = [p for n, p in model.decoder.named_parameters() if "lora_B" in n]
    assert adapters and all(float(p.detach().abs().sum()) > 0 for p in adapters), "LoRA B starts at zero and must move"
