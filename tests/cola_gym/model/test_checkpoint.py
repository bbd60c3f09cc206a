"""save_pretrained / from_pretrained: round trips and clear errors, never a pickle load."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cola_gym.errors import CheckpointError, ModelNotFoundError
from cola_gym.model import CoLAModel
from cola_gym.model.checkpoint import CONFIG_FILE, HEADS_FILE


def _all_head_tensors(model: CoLAModel) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v for n, part in model.heads().items() for k, v in part.state_dict().items()}


def _same_outputs(a: CoLAModel, b: CoLAModel) -> bool:
    prompt = torch.tensor([a.tokenizer("Round trip")["input_ids"]])
    sa, sb = a.start(prompt), b.start(prompt)
    actions = torch.arange(a.num_actions)
    return torch.equal(
        a.next_tokens(sa.select([0] * a.num_actions), actions), b.next_tokens(sb.select([0] * b.num_actions), actions)
    )


def test_round_trip_by_reference(tiny_cola: CoLAModel, tmp_path: Path) -> None:
    tiny_cola.save_pretrained(tmp_path / "ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == [CONFIG_FILE, HEADS_FILE]
    loaded = CoLAModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == tiny_cola.config
    expected, actual = _all_head_tensors(tiny_cola), _all_head_tensors(loaded)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert _same_outputs(tiny_cola, loaded)


def test_round_trip_with_the_decoder_stored_alongside(tiny_cola: CoLAModel, tmp_path: Path) -> None:
    tiny_cola.save_pretrained(tmp_path / "ckpt", store_decoder=True)
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "ckpt", moved)  # self-contained: works after a move
    loaded = CoLAModel.from_pretrained(moved)
    assert json.loads((moved / CONFIG_FILE).read_text())["decoder"] == {"name_or_path": "decoder", "stored": True}
    assert _same_outputs(tiny_cola, loaded)


@pytest.fixture
def checkpoint(tiny_cola: CoLAModel, tmp_path: Path) -> Path:
    tiny_cola.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_corrupt_weights_give_a_clear_error(checkpoint: Path) -> None:
    heads = checkpoint / HEADS_FILE
    heads.write_bytes(heads.read_bytes()[: heads.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        CoLAModel.from_pretrained(checkpoint)


def test_a_pickle_in_place_of_the_weights_is_refused(checkpoint: Path) -> None:
    torch.save({"x": torch.zeros(2)}, checkpoint / HEADS_FILE)  # a pickle-based file
    with pytest.raises(CheckpointError, match="safetensors"):
        CoLAModel.from_pretrained(checkpoint)


def test_corrupt_config_gives_a_clear_error(checkpoint: Path) -> None:
    (checkpoint / CONFIG_FILE).write_text('{"format": "cola-gym", "format_ver')
    with pytest.raises(CheckpointError, match="not readable JSON"):
        CoLAModel.from_pretrained(checkpoint)


def test_missing_weights_give_a_clear_error(checkpoint: Path) -> None:
    (checkpoint / HEADS_FILE).unlink()
    with pytest.raises(CheckpointError, match="no head weights"):
        CoLAModel.from_pretrained(checkpoint)


def test_weights_that_do_not_fit_the_config(checkpoint: Path) -> None:
    meta = json.loads((checkpoint / CONFIG_FILE).read_text())
    meta["cola_config"]["num_actions"] = 32
    (checkpoint / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="wrong shape"):
        CoLAModel.from_pretrained(checkpoint)


def test_heads_for_another_decoder(checkpoint: Path, make_tiny_decoder: Callable[..., Path]) -> None:
    wider = make_tiny_decoder(hidden_size=96)
    with pytest.raises(CheckpointError, match="built for another decoder"):
        CoLAModel.from_pretrained(checkpoint, decoder=wider)


def test_newer_format_is_refused(checkpoint: Path) -> None:
    meta = json.loads((checkpoint / CONFIG_FILE).read_text())
    meta["format_version"] = 99
    (checkpoint / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format_version 99"):
        CoLAModel.from_pretrained(checkpoint)


def test_missing_model_paths(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="No model directory"):
        CoLAModel.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        CoLAModel.from_pretrained(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):  # ModelNotFoundError is a FileNotFoundError
        CoLAModel.from_pretrained("./does/not/exist")


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_heads_with_non_finite_weights_are_refused(tiny_cola: CoLAModel, tmp_path: Path, bad_value: float) -> None:
    from safetensors.torch import load_file, save_file

    tiny_cola.save_pretrained(tmp_path / "ckpt")
    tensors = load_file(str(tmp_path / "ckpt" / HEADS_FILE))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = bad_value
    save_file(tensors, str(tmp_path / "ckpt" / HEADS_FILE))
    with pytest.raises(CheckpointError, match=f"NaN or infinite weights in {name}"):
        CoLAModel.from_pretrained(tmp_path / "ckpt")


def test_a_save_killed_half_way_leaves_nothing_behind_after_the_next(tiny_cola: CoLAModel, tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / f".{HEADS_FILE}.abc123").write_bytes(b"\0" * 64)  # what a kill during the write leaves
    tiny_cola.save_pretrained(target)
    assert sorted(p.name for p in target.iterdir()) == [CONFIG_FILE, HEADS_FILE]
