"""Left-padded batched prefill and decoding on the device against each row decoded alone.

Prompts of very different lengths share one left-padded prefill. A padding query with nothing
to attend to gives NaN on some CUDA attention kernels (CPU kernels give 0, so the CPU suite
cannot see it), and NaN in the padding's keys or values poisons every later step (0 x NaN);
the model lets each padding query see itself and stores the padding's KV as zeros, which is
checked here on the device. Batched and single-row kernels round differently in bf16, so the
rows are compared with tolerances and agreement rates.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cola_gym.model import CoLAModel, DecoderSettings
from cola_gym.model.generation import left_pad

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

PROMPT_LENGTHS = (3, 6, 13, 27, 55, 98, 151, 203)
STEPS = 64


@pytest.fixture(scope="module")
def wide_model(make_tiny_decoder: Callable[..., Path]) -> CoLAModel:
    """A random decoder with 64-wide attention heads (as SmolLM2's and Llama-3.2's), fresh CoLA heads, on the device."""
    path = make_tiny_decoder(seed=3, hidden_size=256)
    return CoLAModel.from_pretrained(str(path), settings=DecoderSettings(device="cuda"))


def _prompts(model: CoLAModel) -> list[list[int]]:
    generator = torch.Generator().manual_seed(0)
    first_plain_id = max(model.tokenizer.all_special_ids) + 1
    return [torch.randint(first_plain_id, len(model.tokenizer), (n,), generator=generator).tolist()
            for n in PROMPT_LENGTHS]  # fmt: skip


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.float().flatten(), b.float().flatten(), dim=0).item()


@torch.inference_mode()
def test_left_padded_prefill_is_finite_and_decodes_as_single_rows(wide_model: CoLAModel, check_state) -> None:
    model = wide_model
    prompts = _prompts(model)
    ids, mask = left_pad(prompts)
    assert mask.shape[1] == max(PROMPT_LENGTHS) and int(mask.sum()) == sum(PROMPT_LENGTHS)
    batch = model.start(ids, mask, track_policy=True)
    check_state(batch, "left-padded prefill")  # every KV column, padding included: NaN there poisons later steps
    singles = [model.start(torch.tensor([prompt]), track_policy=True) for prompt in prompts]
    assert batch.policy_logits is not None
    for row, single in enumerate(singles):
        assert single.policy_logits is not None
        assert _cosine(batch.hidden[row], single.hidden[0]) > 0.999, f"row {row} ({PROMPT_LENGTHS[row]} tokens)"
        assert _cosine(batch.policy_logits[row], single.policy_logits[0]) > 0.99, f"row {row} policy"

    # greedy decoding of the batch
    state, tokens = batch, []
    for _ in range(STEPS):
        token = model.decoder_logits(state.hidden).argmax(-1)
        tokens.append(token)
        state = model.append(state, token[:, None])
    check_state(state, f"after {STEPS} batched steps")
    chosen = torch.stack(tokens, dim=1).cpu()  # [rows, STEPS]

    # each row alone, unpadded, fed the batch's own tokens (teacher forcing): a disagreement
    # counts once instead of sending the rest of the row down another text
    agree, last = 0, []
    for row, single in enumerate(singles):
        for step in range(STEPS):
            agree += int(model.decoder_logits(single.hidden).argmax(-1)) == int(chosen[row, step])
            single = model.append(single, chosen[row, step].view(1, 1))
        last.append(_cosine(state.hidden[row], single.hidden[0]))
    rate = agree / chosen.numel()
    print(f"\ngreedy agreement {rate:.4f} over {chosen.numel()} tokens; last-step cosine min {min(last):.5f}")
    assert rate >= 0.99, f"batched and single-row greedy tokens agree on {rate:.2%} only"
    assert min(last) > 0.99, f"last-step hidden-state cosines {last}"
