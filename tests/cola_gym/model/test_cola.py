"""The CoLA model on a tiny real Llama: identity at init, cached decoding, IDM timing, snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cola_gym.model import CoLAConfig, CoLAModel


@pytest.fixture(scope="module")
def fresh(tiny_decoder_dir: Path) -> CoLAModel:
    return CoLAModel.from_pretrained(str(tiny_decoder_dir))


def _texts(model: CoLAModel) -> tuple[torch.Tensor, torch.Tensor]:
    """A left-padded batch of two prompts."""
    tokenizer = model.tokenizer
    rows = [tokenizer(t)["input_ids"] for t in ("What is 2 + 3? Think step by step.", "Hello")]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def test_untrained_world_model_reproduces_the_decoder_for_every_action(fresh: CoLAModel) -> None:
    ids, mask = _texts(fresh)
    with torch.no_grad():
        hidden = fresh.hidden_states(ids, mask)
        decoder_logits = fresh.decoder(input_ids=ids, attention_mask=mask).logits
        for action in range(fresh.num_actions):
            actions = torch.full(ids.shape, action)
            logits = fresh.world_model_logits(hidden, fresh.codebook(actions))
            assert torch.equal(logits, fresh.lm_head(hidden))
    # and the states are the decoder's own (same positions as its forward with padding)
    assert torch.allclose(fresh.lm_head(hidden)[mask.bool()], decoder_logits[mask.bool()], atol=1e-5)


def test_paper_output_form_is_available(tiny_decoder_dir: Path, fresh: CoLAModel) -> None:
    paper = CoLAModel(CoLAConfig(output_form="paper"), fresh.decoder, fresh.tokenizer)
    hidden = torch.randn(3, fresh.hidden_size)
    with torch.no_grad():
        logits = paper.world_model_logits(hidden, paper.codebook(torch.tensor([0, 1, 2])))
        expected = paper.lm_head(paper.final_norm(hidden) - hidden)
    assert torch.allclose(logits, expected)


def test_cached_decoding_equals_full_reencoding_token_for_token(tiny_cola: CoLAModel) -> None:
    model = tiny_cola
    prompt = torch.tensor([model.tokenizer("Solve: 12 * 7 = ?")["input_ids"]])
    generator = torch.Generator().manual_seed(0)
    actions = torch.randint(0, model.num_actions, (48,), generator=generator)
    state = model.start(prompt, track_policy=True)
    tokens = []
    for action in actions:
        token, state = model.step(state, action[None])
        tokens.append(int(token))
    assert len(set(tokens)) > 5, "the perturbed world model should follow its actions"

    sequence = prompt[0].tolist()
    with torch.no_grad():
        for action, token in zip(actions.tolist(), tokens, strict=True):
            hidden = model.hidden_states(torch.tensor([sequence]))[:, -1]
            expected = model.world_model_logits(hidden, model.codebook(torch.tensor([action]))).argmax(-1)
            assert int(expected) == token
            sequence.append(token)
        hidden = model.hidden_states(torch.tensor([sequence]))
        policy = model.policy_logits(hidden)
    assert torch.allclose(state.hidden, hidden[:, -1], atol=1e-5)
    assert torch.allclose(state.policy_logits, policy[:, -1], atol=1e-4)


def test_batched_left_padded_decoding_equals_single_rows(tiny_cola: CoLAModel) -> None:
    model = tiny_cola
    ids, mask = _texts(model)
    actions = torch.tensor([[3, 9], [17, 17], [60, 1], [5, 44]])
    batch = model.start(ids, mask, track_policy=True)
    batch_tokens = []
    for step_actions in actions:
        tokens, batch = model.step(batch, step_actions)
        batch_tokens.append(tokens)
    for row in range(2):
        real = ids[row][mask[row].bool()][None]
        single = model.start(real, track_policy=True)
        for step, step_actions in enumerate(actions):
            token, single = model.step(single, step_actions[row : row + 1])
            assert int(token) == int(batch_tokens[step][row])
        assert torch.allclose(single.hidden[0], batch.hidden[row], atol=1e-5)
        assert torch.allclose(single.policy_logits[0], batch.policy_logits[row], atol=1e-4)


def test_padding_cannot_poison_the_real_rows(tiny_cola: CoLAModel) -> None:
    """Non-finite states at padding positions (as some CUDA kernels give a padding query with
    nothing to attend to) never reach a real row: padding's keys and values are stored as zeros."""
    model = tiny_cola
    ids, mask = _texts(model)  # row 1 is left-padded with id 0
    feed = torch.tensor([[0, 0, 0, 5, 6], [7, 8, 9, 10, 11]])
    feed_mask = (feed != 0).long()

    def poison(module, args, output):
        return output.masked_fill((args[0] == 0)[..., None], float("nan"))

    handle = model.decoder_base.embed_tokens.register_forward_hook(poison)
    try:
        batch = model.start(ids, mask, track_policy=True)
        batch = model.append(batch, feed, feed_mask)
    finally:
        handle.remove()
    assert torch.isfinite(batch.hidden).all() and torch.isfinite(batch.policy_logits).all()
    padding = ~batch.attention_mask.bool()
    for keys, values in batch.decoder_kv + batch.head_kv["policy"]:
        for tensor in (keys, values):
            assert torch.isfinite(tensor).all()
            assert (tensor.permute(0, 2, 1, 3)[padding] == 0).all()
    tokens, batch = model.step(batch, torch.tensor([3, 9]))
    for row in range(2):
        single = model.start(ids[row][mask[row].bool()][None], track_policy=True)
        single = model.append(single, feed[row][feed_mask[row].bool()][None])
        token, single = model.step(single, torch.tensor([[3, 9][row]]))
        assert int(token) == int(tokens[row])
        assert torch.allclose(single.hidden[0], batch.hidden[row], atol=1e-5)
        assert torch.allclose(single.policy_logits[0], batch.policy_logits[row], atol=1e-4)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_no_query_of_a_padded_chunk_is_fully_masked(implementation: str) -> None:
    from cola_gym.model.cola import padded_attention_mask

    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 1, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1]])
    built = padded_attention_mask(mask, 4, implementation, torch.float32)
    allowed = built if implementation == "sdpa" else built == 0
    assert allowed.shape == (3, 1, 4, 6)
    assert allowed.any(dim=-1).all(), "every query sees at least one key"
    for row in range(3):
        for query in range(4):
            column = 2 + query
            expected = [(key <= column and bool(mask[row, key])) or key == column for key in range(6)]
            assert allowed[row, 0, query].tolist() == expected
    assert padded_attention_mask(mask, 4, "flash_attention_2", torch.float32) is mask


def test_a_state_is_its_own_snapshot(tiny_cola: CoLAModel) -> None:
    model = tiny_cola
    root = model.start(torch.tensor([model.tokenizer("Once upon a time")["input_ids"]]), track_policy=True)
    keys_before = [k.clone() for k, _ in root.decoder_kv]

    def rollout(state, actions):
        out = []
        for action in actions:
            token, state = model.step(state, torch.tensor([action]))
            out.append(int(token))
        return out, state

    first, _ = rollout(root, [1, 2, 3, 4])
    rollout(root, [50, 51, 52])  # another branch from the same root
    again, _ = rollout(root, [1, 2, 3, 4])
    assert first == again
    assert all(torch.equal(k, before) for (k, _), before in zip(root.decoder_kv, keys_before, strict=True))
    copy = root.select([0])
    assert copy.length == root.length and torch.equal(copy.hidden, root.hidden)
    pair = root.select([0, 0])
    view = pair.select([1])  # one row: a view, no copy (the same storage)
    assert view.decoder_kv[0][0].data_ptr() != pair.decoder_kv[0][0].data_ptr()
    assert view.decoder_kv[0][0].untyped_storage().data_ptr() == pair.decoder_kv[0][0].untyped_storage().data_ptr()
    assert torch.equal(view.decoder_kv[0][0], root.decoder_kv[0][0]) and torch.equal(
        view.policy_logits, root.policy_logits
    )
    assert pair.select([0, 1]) is pair  # every row, in order: the state itself
    triple = root.select([0, 0, 0])
    middle = triple.select([1, 2])  # consecutive rows: views, equal to a copy
    assert middle.decoder_kv[0][0].untyped_storage().data_ptr() == triple.decoder_kv[0][0].untyped_storage().data_ptr()
    assert torch.equal(middle.decoder_kv[0][0], triple.select([2, 1]).decoder_kv[0][0])


def test_the_newest_state_grows_in_place_and_other_branches_copy(tiny_cola: CoLAModel) -> None:
    model = tiny_cola
    prompt = model.tokenizer("Once upon a time")["input_ids"]
    root = model.start(torch.tensor([prompt]), track_policy=True)

    def storage(state):
        return state.decoder_kv[0][0].untyped_storage().data_ptr()

    def texts_agree(state, tokens):
        with torch.no_grad():
            hidden = model.hidden_states(torch.tensor([prompt + tokens]))
            policy = model.policy_logits(hidden)
        assert torch.allclose(state.hidden, hidden[:, -1], atol=1e-5)
        assert torch.allclose(state.policy_logits, policy[:, -1], atol=1e-4)

    first_token, first = model.step(root, torch.tensor([1]))
    assert storage(first) == storage(root) and first.arena is root.arena  # written in place
    assert root.decoder_kv[0][0].shape[-2] == len(prompt)  # the root still ends where it ended
    second_token, second = model.step(root, torch.tensor([2]))  # a second branch: the arena moved on
    assert storage(second) != storage(root) and second.arena is not root.arena
    texts_agree(first, [int(first_token)])
    texts_agree(second, [int(second_token)])

    state, tokens, storages = first, [int(first_token)], {storage(first)}
    generator = torch.Generator().manual_seed(1)
    for action in torch.randint(0, model.num_actions, (200,), generator=generator):
        token, state = model.step(state, action[None])
        tokens.append(int(token))
        storages.add(storage(state))
    assert len(storages) <= 3, "the arena doubles when full: a few copies over 200 steps, not one per step"
    texts_agree(state, tokens)
    late_token, late = model.step(first, torch.tensor([7]))  # an old state of the lineage still branches
    texts_agree(late, [int(first_token), int(late_token)])


def test_repacking_removes_padding_from_the_middle_of_rows_exactly(tiny_cola: CoLAModel) -> None:
    model = tiny_cola
    ids, mask = _texts(model)
    feed = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 5], [7, 8, 9, 10, 11, 12, 13, 14]])  # row 0: 7 pads in its middle
    padded = model.append(model.start(ids, mask, track_policy=True), feed, (feed != 0).long())
    packed = padded.repack()
    lengths = padded.attention_mask.sum(1)
    assert packed.length == int(lengths.max()) < padded.length
    assert torch.equal(packed.attention_mask.sum(1), lengths)
    assert packed.repack() is packed  # nothing left to remove
    actions = torch.tensor([[3, 9], [17, 17], [60, 1], [5, 44]])
    for step_actions in actions:
        a, padded = model.step(padded, step_actions)
        b, packed = model.step(packed, step_actions)
        assert torch.equal(a, b)
        assert torch.allclose(padded.hidden, packed.hidden, atol=1e-5)
        assert torch.allclose(padded.policy_logits, packed.policy_logits, atol=1e-4)


def _row_by_row(model: CoLAModel, ids: torch.Tensor, mask: torch.Tensor, feeds_per_step) -> list:
    """Each row alone, fed its feeds one step after another."""
    states = []
    for row in range(ids.shape[0]):
        state = model.start(ids[row][mask[row].bool()][None], track_policy=True)
        for feeds in feeds_per_step:
            if feeds[row]:
                state = model.append(state, torch.tensor([feeds[row]]))
        states.append(state)
    return states


def _ragged(feeds):
    from cola_gym.model.generation import right_pad

    return right_pad(feeds)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_a_ragged_append_equals_each_row_fed_alone(tiny_decoder_dir: Path, implementation: str) -> None:
    """Rows fed different numbers of tokens (none, one, many) each write at their own end: the
    cache stays as wide as its longest row, and every row's state is the one its tokens alone give,
    through later ragged appends, appends to some rows only and ordinary steps."""
    from transformers import PreTrainedModel

    model = CoLAModel.from_pretrained(str(tiny_decoder_dir))
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            module.set_attn_implementation(implementation)
    assert model.decoder_base.config._attn_implementation == implementation
    ids, mask = _texts(model)
    ids, mask = torch.cat([ids, ids[:1]]), torch.cat([mask, mask[:1]])
    steps = [[[5, 6, 7, 8, 9, 10], [11], []], [[12], [13, 14, 15, 16, 17, 18, 19, 20], [21, 22]], [[], [23], [24]]]
    state = model.start(ids, mask, track_policy=True)
    for feeds in steps:
        before = state
        state = model.append_ragged(state, *_ragged(feeds))
        assert state.arena is before.arena, "the batch's newest state writes in place"
        assert state.length == int(state.ends.max())
    subset = [[0, 0, 0], [30, 31, 32, 33], [34]]  # rows 1 and 2 only
    state = model.append_ragged(state, *_ragged(subset[1:]), rows=[1, 2])
    steps.append([[], *subset[1:]])
    fed = [sum(len(feeds[row]) for feeds in steps) for row in range(3)]
    assert state.ends.tolist() == [ids.shape[1] + n for n in fed]
    assert state.length == ids.shape[1] + max(fed), "as wide as the longest row, not the sum of the longest feeds"
    singles = _row_by_row(model, ids, mask, steps)
    for row, single in enumerate(singles):
        assert torch.allclose(single.hidden[0], state.hidden[row], atol=1e-5)
        assert torch.allclose(single.policy_logits[0], state.policy_logits[row], atol=1e-4)
    actions = torch.tensor([[3, 9, 1], [17, 17, 60], [60, 1, 2]])
    for step_actions in actions:
        tokens, state = model.step(state, step_actions)
        for row in range(3):
            token, singles[row] = model.step(singles[row], step_actions[row : row + 1])
            assert int(token) == int(tokens[row])
    for row in range(3):
        assert torch.allclose(singles[row].policy_logits[0], state.policy_logits[row], atol=1e-4)


def test_ragged_appends_keep_old_states_intact_and_branchable(tiny_cola: CoLAModel) -> None:
    """A ragged append writes into masked columns of the states before it; those states still
    decode as they did, and appending to one of them again copies (the arena has moved on)."""
    model = tiny_cola
    ids, mask = _texts(model)
    root = model.start(ids, mask, track_policy=True)
    first = model.append_ragged(root, *_ragged([[5], [6, 7, 8, 9]]))
    second = model.append_ragged(first, *_ragged([[10, 11, 12], [13]]))
    again = model.append_ragged(first, *_ragged([[10, 11, 12], [13]]))  # a branch from an older state
    assert again.arena is not first.arena and second.arena is first.arena
    torch.testing.assert_close(again.hidden, second.hidden, atol=1e-5, rtol=0)
    torch.testing.assert_close(again.policy_logits, second.policy_logits, atol=1e-4, rtol=0)
    other = model.append_ragged(first, *_ragged([[40], []]))
    for row, single in enumerate(_row_by_row(model, ids, mask, [[[5], [6, 7, 8, 9]], [[40], []]])):
        assert torch.allclose(single.hidden[0], other.hidden[row], atol=1e-5)


@pytest.mark.parametrize("new_prompt_length", [3, 40])  # shorter than the batch, and wider than it
def test_rows_replaced_in_place_decode_as_rows_replaced_by_copy(tiny_cola: CoLAModel, new_prompt_length: int) -> None:
    """An autoreset's in-place replacement (``overwrite=True``) writes the new rows into the arena;
    the batch then decodes exactly as after the copying replacement and as each row alone."""
    model = tiny_cola
    ids, mask = _texts(model)
    state = model.append_ragged(model.start(ids, mask, track_policy=True), *_ragged([[5, 6, 7], [8]]))
    fresh = model.start(torch.arange(10, 10 + new_prompt_length)[None], track_policy=True)
    copied = state.replace_rows([1], fresh)
    overwritten = state.replace_rows([1], fresh, overwrite=True)
    assert overwritten.arena is state.arena and copied.arena is not state.arena
    assert overwritten.ends.tolist() == [int(state.ends[0]), new_prompt_length]
    singles = [model.append(model.start(ids[0][mask[0].bool()][None], track_policy=True), torch.tensor([[5, 6, 7]])),
               fresh]  # fmt: skip
    for step_actions in torch.tensor([[3, 9], [17, 60], [60, 1]]):
        tokens, copied = model.step(copied, step_actions)
        same, overwritten = model.step(overwritten, step_actions)
        assert torch.equal(tokens, same)
        for row in range(2):
            token, singles[row] = model.step(singles[row], step_actions[row : row + 1])
            assert int(token) == int(tokens[row])
    torch.testing.assert_close(overwritten.hidden, copied.hidden, atol=1e-5, rtol=0)
    torch.testing.assert_close(overwritten.policy_logits, copied.policy_logits, atol=1e-4, rtol=0)
    for row in range(2):
        torch.testing.assert_close(singles[row].policy_logits[0], overwritten.policy_logits[row], atol=1e-4, rtol=0)


def test_rows_are_copied_when_the_arena_has_moved_on(tiny_cola: CoLAModel) -> None:
    model = tiny_cola
    ids, mask = _texts(model)
    root = model.start(ids, mask, track_policy=True)
    newer = model.append_ragged(root, *_ragged([[5], [6]]))
    fresh = model.start(torch.tensor([[10, 11, 12]]), track_policy=True)
    replaced = root.replace_rows([0], fresh, overwrite=True)  # root may no longer write: a copy
    assert replaced.arena is not newer.arena
    tokens, _ = model.step(newer, torch.tensor([3, 9]))
    again, _ = model.step(model.append_ragged(root, *_ragged([[5], [6]])), torch.tensor([3, 9]))
    assert torch.equal(tokens, again), "the newer state was not touched"


def test_idm_reads_one_future_token_and_no_more(tiny_cola: CoLAModel) -> None:
    model = tiny_cola
    base = model.tokenizer("The cat sat on the mat and then it slept.")["input_ids"]
    t = 4

    def idm(tokens: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return model.idm_logits(model.hidden_states(torch.tensor([tokens])))[0]

    logits = idm(base)
    assert logits.shape == (len(base) - 1, model.num_actions)
    later = [*base[: t + 2], *(x + 1 for x in base[t + 2 :])]  # change tokens after x_t+1
    assert torch.allclose(idm(later)[t], logits[t], atol=1e-5)
    nxt = [*base[: t + 1], base[t + 1] + 1, *base[t + 2 :]]  # change x_t+1 itself
    assert not torch.allclose(idm(nxt)[t], logits[t], atol=1e-5)


def test_initialisation_is_seeded_and_leaves_the_global_rng_alone(fresh: CoLAModel) -> None:
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    a = CoLAModel(CoLAConfig(init_seed=7), fresh.decoder, fresh.tokenizer)
    assert torch.equal(torch.rand(3), expected_draw)
    b = CoLAModel(CoLAConfig(init_seed=7), fresh.decoder, fresh.tokenizer)
    c = CoLAModel(CoLAConfig(init_seed=8), fresh.decoder, fresh.tokenizer)
    assert torch.equal(a.policy.out.weight, b.policy.out.weight)
    assert not torch.equal(a.policy.out.weight, c.policy.out.weight)
    assert all(not p.requires_grad for p in a.decoder.parameters())


def test_hidden_state_bound_holds_even_for_extreme_inputs(fresh: CoLAModel) -> None:
    bound = fresh.hidden_state_bound()
    width = fresh.hidden_size
    spikes = torch.eye(width) * 1e4  # all the energy in one component: the RMS norm's worst case
    noise = torch.randn(256, width, generator=torch.Generator().manual_seed(0)) * 100
    with torch.no_grad():
        normed = fresh.final_norm(torch.cat([spikes, -spikes, noise]))
    assert (normed.abs() <= bound).all()
    assert (normed.abs().amax(0) >= 0.95 * (bound - 1e-3) / 1.01).all()  # and it is tight


def test_tracking_the_policy_does_not_change_decoding(tiny_cola: CoLAModel) -> None:
    prompt = torch.tensor([tiny_cola.tokenizer("Same tokens either way")["input_ids"]])
    with_policy, without = tiny_cola.start(prompt, track_policy=True), tiny_cola.start(prompt, track_policy=False)
    assert without.policy_logits is None and with_policy.policy_logits is not None
    for action in (4, 8, 15, 16, 23, 42):
        token_a, with_policy = tiny_cola.step(with_policy, torch.tensor([action]))
        token_b, without = tiny_cola.step(without, torch.tensor([action]))
        assert int(token_a) == int(token_b)
    assert torch.equal(with_policy.hidden, without.hidden)


def test_tokens_of_every_action_are_each_codes_own_token(tiny_cola: CoLAModel) -> None:
    ids, mask = _texts(tiny_cola)
    state = tiny_cola.start(ids, mask)
    table = tiny_cola.tokens_of_every_action(state.hidden, chunk=1)  # chunking changes nothing
    assert table.shape == (2, tiny_cola.num_actions)
    for action in range(tiny_cola.num_actions):
        assert torch.equal(table[:, action], tiny_cola.next_tokens(state, torch.full((2,), action)))
    assert tiny_cola.tokens_of_every_action(state.hidden[:0]).shape == (0, tiny_cola.num_actions)
