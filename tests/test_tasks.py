"""Built-in tasks: determinism, split hygiene, correctness and one-to-many diversity."""
from __future__ import annotations

import random
import re

import pytest

from tasks import SPLITS, SettingError, SplitSizes, get_task, task_names
from tasks.base import distinct_realizations

SMALL = SplitSizes(labeled=60, unlabeled=80, dev=30, test=30, teacher_pool=100, references=4)


@pytest.fixture(scope="module", params=["d2t", "qg"])
def default_splits(request):
    """Default sizes (500/500/2000/8000/16000, 4 refs): built once per task."""
    task = get_task(request.param)
    return task, task.build(SplitSizes(), seed=0)


# ----------------------------------------------------------------------------- registry

def test_registry_names():
    assert task_names() == ["art", "d2t", "qg", "shakespeare", "squad_qg", "xsum"]
    for name in ("d2t", "qg"):  # the built-in grammar tasks (Hub tasks: tests/test_hub_tasks.py)
        task = get_task(name)
        assert task.name == name == task.generator.name
        assert task.version == task.generator.version
        assert task.metric == "bleu"
        assert task.description
        assert task.max_source_tokens > 0 and task.max_target_tokens > 0


@pytest.mark.parametrize("name", ["d2t", "qg"])
def test_generated_tasks_need_numbers_and_keep_their_teacher_pool(name):
    task = get_task(name)
    assert task.uses_teacher_pool and task.default_sizes.teacher_pool == 16000
    assert task.default_sizes.references == 4
    for split in ("unlabeled", "test", "references"):
        with pytest.raises(SettingError) as err:
            task.build(SplitSizes(**{**SMALL.__dict__, split: None}), seed=0)
        assert err.value.field == f"sizes.{split}" and "needs a number" in str(err.value)


def test_unknown_task_names_allowed_ones():
    with pytest.raises(KeyError) as err:
        get_task("nope")
    msg = str(err.value)
    assert "nope" in msg and "d2t" in msg and "qg" in msg


# ----------------------------------------------------------------------------- splits

@pytest.mark.parametrize("name", ["d2t", "qg"])
def test_deterministic_per_seed(name):
    task = get_task(name)
    random.seed(1)  # the global RNG must not matter
    a = task.build(SMALL, seed=3)
    random.seed(2)
    b = task.build(SMALL, seed=3)
    c = task.build(SMALL, seed=4)
    assert a.splits == b.splits
    assert a.splits != c.splits
    assert a.sources("test") != c.sources("test")


@pytest.mark.parametrize("name", ["d2t", "qg"])
def test_eval_sets_stable_when_training_splits_grow(name):
    task = get_task(name)
    small = task.build(SMALL, seed=0)
    bigger = task.build(SplitSizes(labeled=200, unlabeled=300, dev=30, test=30,
                                   teacher_pool=10, references=4), seed=0)
    assert small.splits["test"] == bigger.splits["test"]
    assert small.splits["dev"] == bigger.splits["dev"]


def test_default_sizes_shapes_and_disjointness(default_splits):
    task, splits = default_splits
    sizes = SplitSizes()
    assert set(splits.splits) == set(SPLITS)
    seen: set[str] = set()
    for split in SPLITS:
        rows = splits.splits[split]
        assert len(rows) == getattr(sizes, split), split
        sources = splits.sources(split)
        assert len(set(sources)) == len(sources), f"duplicate source inside {split}"
        assert not seen & set(sources), f"{split} shares sources with an earlier split"
        seen |= set(sources)
        for row in rows:
            assert isinstance(row["source"], str) and row["source"]
            if split == "unlabeled":
                assert set(row) == {"source"}
            elif split in ("dev", "test"):
                assert set(row) == {"source", "references"}
                refs = row["references"]
                assert 1 <= len(refs) <= sizes.references
                assert len(set(refs)) == len(refs)
            else:
                assert set(row) == {"source", "target"}
                assert isinstance(row["target"], str) and row["target"]


def test_default_sizes_mostly_four_distinct_references(default_splits):
    task, splits = default_splits
    rows = splits.splits["dev"] + splits.splits["test"]
    full = sum(len(set(r["references"])) == 4 for r in rows)
    assert full >= 0.9 * len(rows), f"{task.name}: only {full}/{len(rows)} rows have 4 refs"


def test_default_sizes_lengths_and_vocabulary(default_splits):
    task, splits = default_splits
    rows = [r for split in SPLITS for r in splits.splits[split]]
    targets = [t for r in rows for t in ([r["target"]] if "target" in r else r.get("references", []))]
    src_words = max(len(r["source"].split()) for r in rows)
    tgt_words = [len(t.split()) for t in targets]
    vocab = {w for r in rows for w in r["source"].split()} | {w for t in targets for w in t.split()}
    if task.name == "d2t":
        assert src_words <= 30
        assert 5 <= min(tgt_words) and max(tgt_words) <= 60
    else:
        assert src_words <= 110
        assert max(tgt_words) <= 20
    # Learnable from scratch, yet not trivial.
    assert 200 <= len(vocab) <= 1500, len(vocab)


@pytest.mark.parametrize("name", ["d2t", "qg"])
def test_token_limits_fit_a_small_bpe(name):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    task = get_task(name)
    splits = task.build(SplitSizes(labeled=2000, unlabeled=0, dev=200, test=200,
                                   teacher_pool=0, references=4), seed=0)
    rows = [r for split in SPLITS for r in splits.splits[split]]
    targets = [t for r in rows for t in ([r["target"]] if "target" in r else r.get("references", []))]
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=2000, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([r["source"] for r in rows] + targets, trainer)
    src = max(len(tok.encode(r["source"]).ids) for r in rows)
    tgt = max(len(tok.encode(t).ids) for t in targets)
    # Room for BOS/EOS and a tokenizer trained on different data.
    assert src + 2 <= task.max_source_tokens, src
    assert tgt + 2 <= task.max_target_tokens, tgt


# ----------------------------------------------------------------------------- d2t

PRICE_WORDS = {
    "cheap": ("cheap", "inexpensive", "low-priced", "low prices", "prices are low",
              "prices there are low"),
    "moderate": ("moderate", "mid-priced", "average prices", "prices there are average"),
    "high": ("expensive", "high-priced", "pricey", "high price", "prices are high",
             "prices there are high"),
    "less than £20": ("less than £20", "under £20"),
    "£20-25": ("£20-25",),
    "more than £30": ("more than £30", "over £30", "above £30"),
}
RATING_WORDS = {
    "low": ("low-rated", "poorly", "low customer rating", "low rating", "rating is low"),
    "average": ("average-rated", "average customer rating", "average rating", "rated average",
                "rating is average"),
    "high": ("highly", "well-rated", "high customer rating", "high rating", "rating is high"),
}
AREA_WORDS = {"riverside": ("riverside",), "city centre": ("city centre", "centre of the city")}
FAMILY_NO = ("not family-friendly", "not kid-friendly", "not suitable for children",
             "not welcome", "not welcome children", "adults only", "adults-only")
FAMILY_YES = ("family-friendly", "kid-friendly", "child-friendly", "welcomes families",
              "families are welcome", "suitable for families", "suitable for children",
              "children are welcome", "welcomes children")


def check_d2t(record: dict, text: str) -> None:
    """Every attribute value of the record is expressed in `text`."""
    assert text.endswith("."), text
    assert not re.search(r"\ba [aeiouAEIOU]|\ban [^aeiouAEIOU]", text), text  # a/an
    assert record["name"] in text, text
    if "eatType" in record:
        assert re.search(rf"\b{record['eatType']}\b", text), text
    if "food" in record:
        assert record["food"].lower() in text.lower(), text
    if "near" in record:
        assert record["near"] in text, text
    low = text.lower()
    if "priceRange" in record:
        assert any(w.lower() in low for w in PRICE_WORDS[record["priceRange"]]), text
    if "customerRating" in record:
        value = record["customerRating"]
        assert any(w.lower() in low for w in RATING_WORDS.get(value, (value,))), text
    if "area" in record:
        assert any(w in low for w in AREA_WORDS[record["area"]]), text
    if "familyFriendly" in record:
        has_no = any(w.lower() in low for w in FAMILY_NO)
        if record["familyFriendly"] == "no":
            assert has_no, text
        else:
            assert not has_no and any(w.lower() in low for w in FAMILY_YES), text


def test_d2t_realizations_mention_every_attribute():
    gen = get_task("d2t").generator
    rng = random.Random(11)
    for _ in range(400):
        record = gen.sample_record(rng)
        assert 3 <= len(record) <= 8 and "name" in record
        for _ in range(3):
            check_d2t(record, gen.realize(record, rng))


def test_d2t_source_is_an_ordered_mr():
    gen = get_task("d2t").generator
    rng = random.Random(5)
    order = ["name", "eatType", "food", "priceRange", "customerRating", "area",
             "familyFriendly", "near"]
    names = set()
    for _ in range(300):
        record = gen.sample_record(rng)
        src = gen.source(record)
        keys = re.findall(r"(\w+)\[", src)
        assert keys == [k for k in order if k in record]
        assert src.startswith(f"name[{record['name']}]")
        names.add(record["name"])
    assert len(names) >= 150  # hundreds of distinct restaurant names


FULL_RECORD = {
    "name": "The Golden Goose", "eatType": "pub", "food": "French", "priceRange": "cheap",
    "customerRating": "5 out of 5", "area": "riverside", "familyFriendly": "yes",
    "near": "Burger King",
}


def test_d2t_is_one_to_many():
    gen = get_task("d2t").generator
    rng = random.Random(0)
    texts = [gen.realize(FULL_RECORD, rng) for _ in range(20)]
    for text in texts:
        check_d2t(FULL_RECORD, text)
    assert len(set(texts)) >= 5
    orders = {
        tuple(sorted(("French", "Burger King", "5 out of 5", "riverside"), key=t.find))
        for t in texts
    }
    assert len(orders) >= 3, orders  # attribute order varies
    sentence_counts = {len(re.findall(r"[.!?](?:\s|$)", t)) for t in texts}
    assert len(sentence_counts) >= 2  # aggregation varies
    assert len(distinct_realizations(gen, FULL_RECORD, random.Random(1), 4)) == 4


def test_d2t_short_record_still_varies():
    gen = get_task("d2t").generator
    record = {"name": "The Red Lion", "eatType": "coffee shop", "priceRange": "high"}
    refs = distinct_realizations(gen, record, random.Random(3), 4)
    assert len(refs) == 4
    for text in refs:
        check_d2t(record, text)


# ----------------------------------------------------------------------------- qg

SOURCE_RE = re.compile(r"^answer: (?P<answer>.+?) context: (?P<passage>.+)$")
# Question words that fit each answer type (checks the question asks for the right kind).
WH = {
    "year": re.compile(r"^(When|In (what|which) year|What year)\b"),
    "city": re.compile(r"^(Where|In (what|which) city|What city|Which city|To which city)\b"),
    "person": re.compile(r"^(Who|By whom|Under whom|Which \w+ (was|founded|invented|designed"
                         r"|built|discovered))\b|by whom\?$"),
    "mentor": re.compile(r"^(Who|Under whom)\b"),
    "institution": re.compile(r"^(Where|At (which|what) institution|Which (institution|organisation)"
                              r"|What (institution|organization|did|was))\b"),
    "field": re.compile(r"^(What|Which) (did|subject|field)\b"),
    "thing": re.compile(r"^(What|Which device)\b"),
    "award": re.compile(r"^(What|Which) (award|prize|honour|did|was)\b"),
}


def test_qg_questions_fit_answer_and_passage():
    gen = get_task("qg").generator
    rng = random.Random(21)
    slots = set()
    for _ in range(600):
        record = gen.sample_record(rng)
        slots.add(record["slot"])
        m = SOURCE_RE.match(gen.source(record))
        assert m, gen.source(record)
        answer, passage = m["answer"], m["passage"]
        assert answer == record["answer"]
        assert answer in passage
        assert not re.search(r"\ba [aeiou]", passage), passage
        n_sent = len(re.findall(r"\.(?:\s|$)", passage))
        assert 3 <= n_sent <= 5, passage
        for _ in range(3):
            q = gen.realize(record, rng)
            assert q.endswith("?") and q.count("?") == 1, q
            assert q[0].isupper()
            assert len(q.split()) <= 20
            assert not re.search(rf"\b{re.escape(answer)}\b", q), (answer, q)
            assert WH[record["slot"]].search(q), (record["slot"], q)
    assert {"year", "city", "person", "institution", "field", "thing", "award"} <= slots


def test_qg_passage_wording_belongs_to_the_record():
    gen = get_task("qg").generator
    rng = random.Random(2)
    record = gen.sample_record(rng)
    source = gen.source(record)
    for seed in range(5):
        gen.realize(record, random.Random(seed))
        assert gen.source(record) == source
    # Passages vary in wording across records (e.g. birth sentence templates).
    starts = {gen.source(gen.sample_record(rng)).split(" context: ")[1].split(" ")[0] == "Born"
              for _ in range(100)}
    assert starts == {True, False}


def test_qg_is_one_to_many():
    gen = get_task("qg").generator
    rng = random.Random(4)
    for _ in range(30):
        record = gen.sample_record(rng)
        qs = [gen.realize(record, rng) for _ in range(20)]
        assert len(set(qs)) >= 5, qs
        assert len({q.split()[0] for q in qs} | {" ".join(q.split()[:2]) for q in qs}) >= 3
