"""The teacher cache: built once from the teacher, read by example key, exact when k covers the
vocabulary, never read for targets it was not built for."""
import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from bench.distill.losses import ForwardKL, GeneralizedJSD, ReverseKL, TeacherOutputs
from bench.generation import labels_from_targets, pad_batch
from bench.lm import forward_logits
from bench.teacher_cache import TeacherCache, build_teacher_cache

V = 24


def _model(seed):
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(T5Config(vocab_size=V, d_model=16, d_kv=4, d_ff=32, num_layers=1,
                                               num_decoder_layers=1, num_heads=4, pad_token_id=0,
                                               eos_token_id=2, decoder_start_token_id=0)).eval()


SOURCES = [[5 + i % 7, 6 + i % 5, 9, 2] for i in range(10)]
GOLD = [[[8 + i % 6, 11, 12 + i % 3]] for i in range(10)]
PTS = [[[13, 14 + i % 4], [15 + i % 2, 16, 17, 18]] for i in range(10)]


def _cache(tmp_path, k, dtype="float32", temperature=1.0, sharpen=1.0):
    teacher = _model(1)
    with torch.no_grad():
        teacher.lm_head.weight.mul_(sharpen)  # a peaked teacher, as trained ones are
    build_teacher_cache(tmp_path, teacher, {"gold": {"labeled": (SOURCES, GOLD)},
                                            "beam-k2": {"labeled": (SOURCES[:4], PTS[:4]),
                                                        "unlabeled": (SOURCES[4:], PTS[4:])}},
                        k=k, temperature=temperature, dtype=dtype, pad_id=0, eos_id=2, max_target=6,
                        device="cpu", batch_size=3)
    return teacher, TeacherCache(tmp_path)


def _batch(rows):
    ids, mask = pad_batch([SOURCES[i] for i, _ in rows], 0, "cpu")
    labels = labels_from_targets([PTS[i][j] for i, j in rows], 2, 6, "cpu")
    return ids, mask, labels


def _value_and_grad(term, z, labels, teacher):
    z = z.detach().clone().requires_grad_(True)
    value = term(z, labels, teacher)
    value.backward()
    return value.item(), z.grad


@pytest.mark.parametrize("term", [ForwardKL(), ForwardKL(2.0), ReverseKL(), GeneralizedJSD(0.3),
                                  ForwardKL(normalization="example")], ids=["kl", "kl-t2", "rkl", "jsd", "kl-ex"])
def test_cached_loss_and_gradients_equal_online_when_k_covers_the_vocabulary(tmp_path, term):
    teacher, cache = _cache(tmp_path, k=V, temperature=term.temperature)
    rows = [(1, 0), (5, 1), (7, 0)]
    ids, mask, labels = _batch(rows)
    keys = [("beam-k2", ("labeled" if i < 4 else "unlabeled", i if i < 4 else i - 4, j)) for i, j in rows]
    online = forward_logits(teacher, ids, mask, labels, pad_id=0, sep_id=2)
    student = forward_logits(_model(2), ids, mask, labels, pad_id=0, sep_id=2).detach()
    cached = TeacherOutputs(cached=cache.lookup(keys, labels, "cpu"), cached_rows=torch.arange(3))
    v_on, g_on = _value_and_grad(term, student, labels, online)
    v_ca, g_ca = _value_and_grad(term, student, labels, cached)
    assert v_ca == pytest.approx(v_on, rel=1e-5, abs=1e-6)
    assert torch.allclose(g_ca, g_on, rtol=1e-4, atol=1e-6)
    assert cache.stats["covered_mass_mean"] == pytest.approx(1.0, abs=1e-5)


def test_mixed_batch_cached_rows_and_online_rows_equal_all_online(tmp_path):
    teacher, cache = _cache(tmp_path, k=V)
    rows = [(2, 1), (3, 0), (6, 1)]
    ids, mask, labels = _batch(rows)
    online = forward_logits(teacher, ids, mask, labels, pad_id=0, sep_id=2)
    student = forward_logits(_model(2), ids, mask, labels, pad_id=0, sep_id=2).detach()
    keys = [("beam-k2", ("labeled", 2, 1)), ("beam-k2", ("labeled", 3, 0))]
    mixed = TeacherOutputs(logits=online[2:], logit_rows=torch.tensor([2]),
                           cached=cache.lookup(keys, labels[:2], "cpu"), cached_rows=torch.tensor([0, 1]))
    assert ForwardKL()(student, labels, mixed).item() == pytest.approx(ForwardKL()(student, labels, online).item(),
                                                                      rel=1e-5)


def test_fp16_top_k_cache_is_close_and_records_what_it_loses(tmp_path):
    teacher, cache = _cache(tmp_path, k=8, dtype="float16", sharpen=4.0)
    rows = [(0, 0), (8, 1)]
    ids, mask, labels = _batch(rows)
    keys = [("beam-k2", ("labeled", 0, 0)), ("beam-k2", ("unlabeled", 4, 1))]
    online = forward_logits(teacher, ids, mask, labels, pad_id=0, sep_id=2)
    student = forward_logits(_model(2), ids, mask, labels, pad_id=0, sep_id=2).detach()
    cached = TeacherOutputs(cached=cache.lookup(keys, labels, "cpu"), cached_rows=torch.arange(2))
    full, coarse = ForwardKL()(student, labels, online).item(), ForwardKL()(student, labels, cached).item()
    assert coarse <= full + 1e-3  # merging the tail into one bucket can only lose divergence
    assert coarse == pytest.approx(full, rel=0.05)  # this teacher's top-8 holds most of its mass
    stats = cache.stats
    assert 0.9 < stats["covered_mass_mean"] < 1 and stats["kl_full_cached_mean"] > 0 and stats["k"] == 8
    assert stats["bytes_per_token"] == 8 * (4 + 2) + 8


def test_the_cache_is_never_read_for_other_targets(tmp_path):
    _, cache = _cache(tmp_path, k=4)
    ids, mask, labels = _batch([(1, 0)])
    with pytest.raises(ValueError, match="built for other target tokens"):
        cache.lookup([("beam-k2", ("labeled", 1, 1))], labels, "cpu")  # PT 1's entry, PT 0's labels
    with pytest.raises(KeyError, match="no 'gold' targets for split 'unlabeled'"):
        cache.lookup([("gold", ("unlabeled", 0, 0))], labels, "cpu")
    gold = labels_from_targets([GOLD[3][0]], 2, 6, "cpu")
    assert cache.lookup([("gold", ("labeled", 3, 0))], gold, "cpu").ids.shape == (1, gold.shape[1], 4)


def test_a_batch_mixing_target_sets_reads_each_row_from_its_own_cache(tmp_path):
    """Rows of two caches (different k) interleaved in one batch: each row's distributions are
    its own cache's, in the batch's order, the narrower padded with impossible columns."""
    from bench.teacher_cache import NEG, TeacherCaches

    _, wide = _cache(tmp_path / "wide", k=6)
    _, narrow = _cache(tmp_path / "narrow", k=3)
    caches = TeacherCaches({"beam-k2": wide, "gold": narrow})
    keys = [("gold", ("labeled", 2, 0)), ("beam-k2", ("labeled", 1, 1)), ("gold", ("labeled", 0, 0))]
    labels = labels_from_targets([GOLD[2][0], PTS[1][1], GOLD[0][0]], 2, 6, "cpu")
    got = caches.lookup(keys, labels, "cpu")
    assert got.ids.shape == (3, labels.shape[1], 6)
    for r, (target_set, key) in enumerate(keys):
        alone = (wide if target_set == "beam-k2" else narrow).lookup([(target_set, key)], labels[r:r + 1], "cpu")
        k = alone.ids.shape[-1]
        assert torch.equal(got.ids[r, :, :k], alone.ids[0]) and torch.equal(got.logprobs[r, :, :k], alone.logprobs[0])
        assert torch.equal(got.log_tail[r], alone.log_tail[0])
        assert bool((got.logprobs[r, :, k:] == NEG).all())
