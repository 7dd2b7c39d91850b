"""Alignment of API tokens to the student's tokenizer, on hand-made sequences with known answers,
and the padding of the targets into batch arrays."""
import math

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from bench.api_teacher import (Completion, align_to_student, align_tokens, pack_targets, student_tokens,
                               student_vocab)
from bench.api_teacher.align import _edit_path
from bench.api_teacher.responses import parse_chat
from bench.data import encode
from bench.tokenizer import train_tokenizer

TEXT = "The Eagle serves French food near the river."


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """kdbench's own byte-level BPE, trained on a few sentences (with é and ☕)."""
    texts = [TEXT, "The Eagle is a café ☕ near the river.", "French food is served at The Eagle."] * 20
    return train_tokenizer(texts, 320, tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize("api, student, expected", [
    (["The", " cat", " sat", "."], ["The", " cat", " sat", "."], [0, 1, 2, 3]),
    (["The", " cat", " sat", "."], ["The", " c", "at", " sat", "."], [0, None, None, 2, 3]),  # split differently
    (["un", "believ", "able"], ["unbeliev", "able"], [None, 2]),  # merged differently
    (["Hello", " World", "!"], ["hello", " World", "!"], [None, 1, 2]),  # normalised text: edit alignment
    (["ab", "cd"], ["ab", "X", "cd"], [0, None, 1]),  # a character the API text does not have
    (["a", " b", " c", "  "], ["a", " b", " c"], [0, 1, 2]),  # trailing spaces dropped by the student
    (["a", "", "é"], ["a", "é"], [0, 2]),  # empty API pieces are skipped
])
def test_align_tokens_known_answers(api, student, expected):
    assert align_tokens(api, student) == expected


def test_edit_path_matches_most_characters():
    assert _edit_path("kitten", "sitting") == [(1, 1), (2, 2), (3, 3), (5, 5)]
    assert _edit_path("abc", "abc") == [(0, 0), (1, 1), (2, 2)]


def test_student_tokens_partition_the_text_and_flag_byte_pieces(tok):
    text = "The Eagle ☂ near"  # ☂ is not in the training text: two byte tokens share it
    ids, texts, alignable = student_tokens(tok, text)
    assert "".join(texts) == text and len(ids) == len(texts) == 5
    assert texts == ["The", " Eagle", " ☂", "", " near"]
    assert alignable == [True, True, False, False, True]


def _own_completion(tok, text, logprob=-0.5, alternatives=()):
    """An API completion whose tokens are exactly the student's tokenization of `text`."""
    _, texts, _ = student_tokens(tok, text)
    return Completion(text, texts, [logprob] * len(texts), [list(alternatives)] * len(texts),
                      [False] * len(texts), "stop")


def test_same_tokenization_aligns_every_text_position(tok):
    alternatives = [(" Eagle", math.log(0.2)), ("zq\u2603", math.log(0.1))]  # the second is no student token
    targets = align_to_student(_own_completion(tok, TEXT, math.log(0.5), alternatives), tok, k=3, max_len=64)
    assert targets.labels.tolist() == encode(tok, [TEXT], 64)[0]
    n = len(targets.labels)
    assert targets.aligned.tolist() == [True] * (n - 1) + [False]  # eos: one-hot, never aligned
    assert targets.aligned_share == pytest.approx((n - 1) / n)
    eagle = student_vocab(tok)[" Eagle"]
    row0 = targets.topk_ids[0].tolist()
    assert row0 == [targets.labels[0], eagle, 0]  # most likely first (here the PT token), then padding
    assert np.exp(targets.topk_logprobs[0][:2]) == pytest.approx([0.5, 0.2], rel=1e-5)
    assert targets.topk_logprobs[0][2] == -np.inf
    assert targets.tail_mass[0] == pytest.approx(0.3, rel=1e-5)  # 1 − kept: the unknown candidate goes there
    eagle_row = targets.labels.tolist().index(eagle)  # the candidate equal to the PT token is not counted twice
    assert targets.topk_ids[eagle_row].tolist() == [eagle, 0, 0]
    assert targets.tail_mass[eagle_row] == pytest.approx(0.5, rel=1e-5)
    assert (targets.topk_ids[-1].tolist(), targets.topk_logprobs[-1][0], targets.tail_mass[-1]) == (
        [tok.eos_token_id, 0, 0], 0.0, 0.0)
    total = np.exp(targets.topk_logprobs).sum(1) + targets.tail_mass
    assert total == pytest.approx(np.ones(n), rel=1e-5)


def test_truncation_to_max_len_matches_encode(tok):
    targets = align_to_student(_own_completion(tok, TEXT), tok, k=1, max_len=5)
    assert targets.labels.tolist() == encode(tok, [TEXT], 5)[0] and len(targets.labels) == 5
    assert targets.aligned.tolist() == [True] * 4 + [False]


def test_different_api_split_falls_back_to_one_hot(tok):
    ids, texts, _ = student_tokens(tok, TEXT)
    merged = [texts[0] + texts[1]] + texts[2:]  # the API has one token for the student's first two
    completion = Completion(TEXT, merged, [-0.1] * len(merged), [[]] * len(merged), [False] * len(merged))
    targets = align_to_student(completion, tok, k=2, max_len=64)
    assert targets.aligned.tolist()[:3] == [False, False, True]
    assert targets.topk_ids[0].tolist() == [ids[0], 0] and targets.topk_logprobs[0].tolist() == [0.0, -np.inf]
    assert targets.aligned_share == pytest.approx((len(ids) - 2) / (len(ids) + 1))


def test_rows_are_sorted_and_always_hold_the_pt_token(tok):
    completion = _own_completion(tok, "The Eagle", math.log(0.1), [(" Eagle", math.log(0.6)), (" the", math.log(0.2))])
    targets = align_to_student(completion, tok, k=2, max_len=16)
    vocab = student_vocab(tok)
    assert targets.topk_ids[0].tolist() == [vocab[" Eagle"], targets.labels[0]]  # " the" does not fit in k=2
    assert np.exp(targets.topk_logprobs[0]) == pytest.approx([0.6, 0.1], rel=1e-5)
    assert targets.tail_mass[0] == pytest.approx(0.3, rel=1e-5)


def test_probabilities_past_one_are_renormalised(tok):
    completion = _own_completion(tok, "The Eagle", math.log(0.7), [(" Eagle", math.log(0.5))])
    targets = align_to_student(completion, tok, k=2, max_len=16)
    assert np.exp(targets.topk_logprobs[0]) == pytest.approx([0.7 / 1.2, 0.5 / 1.2], rel=1e-5)
    assert targets.tail_mass[0] == 0.0


def test_api_byte_pieces_of_a_character_are_not_aligned(tok):
    pieces = [b"caf", b"\xc3", b"\xa9"]  # é split across two API tokens; the student has it as one
    body = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "café"},
                         "logprobs": {"content": [{"token": p.decode("latin-1"), "logprob": -0.2, "bytes": list(p),
                                                   "top_logprobs": []} for p in pieces]}}]}
    completion = parse_chat(body, n=1, logprobs=True)[0]
    assert completion.tokens == ["caf", "", "é"] and completion.partial == [False, True, True]
    assert student_tokens(tok, "café")[1] == ["caf", "é"]
    targets = align_to_student(completion, tok, k=1, max_len=16)
    assert targets.aligned.tolist() == [True, False, False]  # same span as the API's "é", but a byte piece


def test_sentencepiece_style_vocabulary():
    """Metaspace ("▁cat") tokens map to " cat", and the skipped space joins the next token."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "▁The": 3, "▁cat": 4, "▁sat": 5, "▁dog": 6}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    sp = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    assert student_vocab(sp) == {" The": 3, " cat": 4, " sat": 5, " dog": 6}
    ids, texts, _ = student_tokens(sp, "The cat sat")
    assert ids == [3, 4, 5] and texts == ["The", " cat", " sat"]
    api = Completion("The cat sat", ["The", " cat", " sat"], [-0.1, -0.2, -0.3],
                     [[], [(" dog", math.log(0.3))], []], [False] * 3)
    targets = align_to_student(api, sp, k=2, max_len=8)
    assert targets.labels.tolist() == [3, 4, 5, 1] and targets.aligned.tolist() == [True, True, True, False]
    assert targets.topk_ids[1].tolist() == [4, 6]


def test_pack_targets_pads_like_kdbench_labels(tok):
    short = align_to_student(_own_completion(tok, "The Eagle"), tok, k=2, max_len=16)
    long = align_to_student(_own_completion(tok, TEXT), tok, k=2, max_len=16)
    packed = pack_targets([short, long])
    n = len(short.labels)
    assert packed["labels"].shape == (2, len(long.labels)) and packed["topk_ids"].shape == (2, len(long.labels), 2)
    assert (packed["labels"][0, n:] == -100).all() and (packed["topk_logprobs"][0, n:] == -np.inf).all()
    assert (packed["labels"][1] == long.labels).all() and not packed["aligned"][0, n:].any()
    assert np.exp(packed["log_tail"]) == pytest.approx(packed["tail_mass"])
