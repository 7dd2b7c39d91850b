"""bench.sampling: the cached sampling loop against Hugging Face `generate` on real tiny models."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

from bench.generation import generate_ids
from bench.lm import generate_batch
from bench.sampling import draw, plain_sampling, sample

PAD = 0


@pytest.fixture(scope="module")
def t5():
    """A random T5 whose greedy outputs vary (a larger init than T5's default, untied head)."""
    cfg = T5Config(vocab_size=50, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2, num_heads=4,
                   decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=1, initializer_factor=5.0,
                   tie_word_embeddings=False)
    torch.manual_seed(0)
    return T5ForConditionalGeneration(cfg).eval()


def _batch(rows=16, width=12):
    torch.manual_seed(1)
    ids = torch.randint(2, 50, (rows, width))
    mask = torch.ones_like(ids)
    mask[::2, 8:] = 0  # right padding on every other row
    return ids.masked_fill(mask.eq(0), PAD), mask


def _frequent_token(model, ids, mask) -> int:
    """A token the model's greedy outputs often emit: as eos, some rows end early and some do not."""
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=30, pad_token_id=PAD, eos_token_id=1)
    values, counts = out[:, 1:].unique(return_counts=True)
    counts[values < 2] = 0
    return int(values[counts.argmax()])


def test_with_top_k_1_the_loop_gives_generates_greedy_outputs_token_for_token(t5):
    ids, mask = _batch()
    eos = _frequent_token(t5, ids, mask)
    greedy = t5.generate(input_ids=ids, attention_mask=mask, max_new_tokens=30, pad_token_id=PAD, eos_token_id=eos)
    ended = greedy[:, 1:].eq(eos).any(1)
    assert 0 < int(ended.sum()) < len(ids)  # the comparison covers rows that stop and rows that run to the end
    ours = sample(t5, ids, mask, pad_id=PAD, eos_id=eos, max_new_tokens=30, top_k=1)
    assert torch.equal(ours, greedy)
    # and with several samples per input, each input's rows in turn, as generate orders them
    many = sample(t5, ids, mask, pad_id=PAD, eos_id=eos, max_new_tokens=30, top_k=1, num_return_sequences=3)
    assert torch.equal(many, greedy.repeat_interleave(3, dim=0))


@pytest.mark.parametrize("settings", [{"temperature": 0.7, "top_k": 10, "top_p": 0.9}, {"top_p": 0.8},
                                      {"top_k": 5}, {"temperature": 1.5}])
def test_sampled_first_tokens_follow_generates_filtered_distribution(t5, settings):
    """The first token of 20,000 samples per input against the probabilities `generate` itself
    computes after its temperature, top-k and top-p warpers (its `output_scores`): the total
    variation distance within 3× what sampling noise gives (seeded, so the check is fixed)."""
    flat = copy.deepcopy(t5)
    flat.lm_head.weight.data *= 0.01  # a flatter distribution, so that top-p leaves several tokens
    ids, mask = _batch(rows=2)
    ref = flat.generate(input_ids=ids, attention_mask=mask, max_new_tokens=1, do_sample=True, pad_token_id=PAD,
                        eos_token_id=1, output_scores=True, return_dict_in_generate=True, **settings)
    expected = ref.scores[0].softmax(-1)  # (2, V): generate's distribution of the first token
    torch.manual_seed(3)
    n = 20_000
    out = sample(flat, ids, mask, pad_id=PAD, eos_id=1, max_new_tokens=1, num_return_sequences=n, **settings)
    for row in range(2):
        first = out[row * n:(row + 1) * n, 1]
        empirical = torch.bincount(first, minlength=expected.shape[1]).float() / n
        support = int(expected[row].gt(0).sum())
        assert support >= 3  # a real choice
        assert support < expected.shape[1] or settings == {"temperature": 1.5}  # the filters removed some
        assert set(first.unique().tolist()) <= set(expected[row].nonzero().flatten().tolist())  # never outside
        p = expected[row]
        noise = 0.5 * float((2 / torch.pi * p * (1 - p) / n).sqrt().sum())  # E[TV] of n draws from p
        assert 0.5 * float((empirical - p).abs().sum()) < 3 * noise


def test_draw_never_picks_a_token_without_mass_and_is_seeded():
    scores = torch.full((4000, 6), float("-inf"))
    scores[:, 2] = 0.0
    scores[:, 4] = 1.0  # the last token with mass is not the last column
    torch.manual_seed(0)
    a = draw(scores)
    assert set(a.tolist()) == {2, 4}
    assert abs(float(a.eq(4).float().mean()) - float(torch.tensor([0.0, 1.0]).softmax(0)[1])) < 0.03
    torch.manual_seed(0)
    assert torch.equal(draw(scores), a)


def test_generate_ids_samples_in_the_loop_only_when_the_model_asks_for_nothing_more(t5):
    ids, mask = _batch(rows=4)
    kw = {"max_new_tokens": 12, "do_sample": True, "top_k": 50, "num_beams": 1}
    assert plain_sampling(t5, kw) == {"max_new_tokens": 12, "top_k": 50}
    torch.manual_seed(5)
    via_lm = generate_batch(t5, ids, mask, pad_id=PAD, eos_id=1, sep_id=1, **kw)
    torch.manual_seed(5)
    assert torch.equal(via_lm, sample(t5, ids, mask, pad_id=PAD, eos_id=1, max_new_tokens=12, top_k=50))
    # beams, greedy and arguments the loop lacks stay with generate
    assert plain_sampling(t5, {**kw, "num_beams": 2}) is None
    assert plain_sampling(t5, {**kw, "do_sample": False}) is None
    assert plain_sampling(t5, {**kw, "min_new_tokens": 3}) is None

    # a generation config that blocks repeated tokens: generate's own sampling (same seed, same stream;
    # sources of one length, so that generate_ids keeps their order)
    t5.generation_config.no_repeat_ngram_size = 1
    try:
        assert plain_sampling(t5, kw) is None
        ids, mask = ids[1::2], mask[1::2]
        sources = [row.tolist() for row in ids]
        torch.manual_seed(5)
        ours = generate_ids(t5, sources, pad_id=PAD, eos_id=1, max_new_tokens=12, do_sample=True, top_k=50)
        torch.manual_seed(5)
        theirs = t5.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=True, top_k=50,
                             pad_token_id=PAD, eos_token_id=1)
        assert [o[0] for o in ours] == [[t for t in row[1:].tolist() if t != PAD] for row in theirs]
        assert all(len(set(o[0])) == len(o[0]) for o in ours)  # no token twice
    finally:
        t5.generation_config.no_repeat_ngram_size = None


def test_a_bart_config_with_forced_eos_is_not_plain():
    cfg = BartConfig(vocab_size=40, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32)
    bart = BartForConditionalGeneration(cfg)
    assert bart.generation_config.forced_eos_token_id is not None
    assert plain_sampling(bart, {"do_sample": True, "max_new_tokens": 4}) is None
