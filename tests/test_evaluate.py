"""Quality metrics against the metric libraries' own results; evaluate_model and dev_loss on a
real tiny T5."""
import re

import pytest
import torch
import torch.nn.functional as F
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF, TER

from bench.data import Lengths, encode
from bench.distill.loop import dev_loss
from bench.evaluate import bertscore, decode, dev_pairs, evaluate_model, rouge, score
from bench.generation import generate_ids
from bench.models import build_model, config_from_spec
from bench.spec import ModelSpec
from bench.pretrained import load_tokenizer
from bench.tokenizer import train_tokenizer

HYPS = ["The Eagle is a pub near the river.", "Who founded the company in 1921?", "It serves French food."]
REFS = [  # 3, 1 and 2 references
    ["The Eagle is a pub by the river.", "Near the river is The Eagle, a pub.", "The Eagle pub is near the river."],
    ["Who founded the firm in 1921?"],
    ["It serves French food.", "French food is served there."],
]
ROWS = [{"source": f"name[The Eagle], food[{f}], area[{a}]", "references": [f"The Eagle serves {f} food in the {a}.",
                                                                           f"In the {a}, The Eagle serves {f} food."]}
        for f in ("French", "Italian", "Chinese") for a in ("city centre", "riverside")]
LENGTHS = Lengths(max_source=24, max_target=10)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    train_tokenizer([r["source"] for r in ROWS] + [t for r in ROWS for t in r["references"]] + HYPS, 300, d)
    return load_tokenizer(d)


@pytest.fixture(scope="module")
def model(tok):
    config = config_from_spec(ModelSpec(arch="t5", d_model=16, ffn_dim=32, encoder_layers=1, decoder_layers=1,
                                        heads=2, dropout=0.1), tok)
    return build_model(config, seed=0)


def test_score_equals_sacrebleu_and_rouge_score_with_variable_reference_counts():
    got = score(HYPS, REFS, ter=True)
    assert "ter" not in score(HYPS, REFS)  # TER only on request
    streams = [[REFS[0][0], REFS[1][0], REFS[2][0]],
               [REFS[0][1], None, REFS[2][1]],
               [REFS[0][2], None, None]]
    assert got["bleu"] == pytest.approx(BLEU().corpus_score(HYPS, streams).score)
    assert got["chrf"] == pytest.approx(CHRF().corpus_score(HYPS, streams).score)
    assert got["ter"] == pytest.approx(TER().corpus_score(HYPS, streams).score)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for kind in ("rouge1", "rouge2", "rougeL"):
        best = [max(scorer.score(r, h)[kind].fmeasure for r in refs) for h, refs in zip(HYPS, REFS)]
        assert got[kind] == pytest.approx(100 * sum(best) / len(best))
    for name in ("bleu", "chrf", "ter"):
        assert "nrefs:var" in got[f"{name}_signature"] and "version:2." in got[f"{name}_signature"]
    assert got["ter_signature"].startswith("nrefs:var|case:lc|tok:tercom")
    assert "stemmer=True" in got["rouge_signature"] and "max over refs" in got["rouge_signature"]


def test_rouge_scores_each_example_against_its_best_reference():
    hyp = ["the cat sat on the mat"]
    alone = rouge(hyp, [["a dog ran in the park"]])
    with_exact = rouge(hyp, [["a dog ran in the park", "the cat sat on the mat"]])
    assert with_exact["rouge1"] == with_exact["rouge2"] == with_exact["rougeL"] == pytest.approx(100)
    assert alone["rouge1"] < 50
    # stemming: "sitting cats" matches "sitting cat" on both unigrams
    assert rouge(["sitting cats"], [["sitting cat"]])["rouge1"] == pytest.approx(100)


def test_rouge_with_remembered_tokens_equals_rouge_scores_own_tokenizer_on_a_corpus():
    """bench.evaluate remembers tokens and stems within a corpus; the scores are rouge-score's
    own, example by example (built-in d2t texts: other examples' references as hypotheses)."""
    from tasks import SplitSizes, get_task

    rows = get_task("d2t").build(SplitSizes(labeled=0, unlabeled=0, dev=1, test=120, teacher_pool=0, references=4),
                                 3).splits["test"]
    refs = [r["references"] for r in rows]
    hyps = [refs[(i + 7) % len(refs)][i % 4] + (" Running!" if i % 3 else "") for i in range(len(refs))]
    hyps[0] = refs[0][2]  # an exact match
    stock = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    got = rouge(hyps, refs)
    for kind in ("rouge1", "rouge2", "rougeL"):
        per_example = [stock.score_multi(r, h)[kind].fmeasure for h, r in zip(hyps, refs)]
        assert got[kind] == pytest.approx(100 * sum(per_example) / len(per_example), rel=1e-12)
    assert rouge(hyps[:1], refs[:1])["rougeL"] == pytest.approx(100)


def test_ter_is_lower_for_a_better_hypothesis_and_bleu_higher():
    refs = [["The Eagle is a pub near the river.", "The Eagle pub is by the river."]]
    good, bad = score(["The Eagle is a pub near the river."], refs, ter=True), score(["A river pub."], refs, ter=True)
    assert good["ter"] == pytest.approx(0) and bad["ter"] > good["ter"]
    assert good["bleu"] > bad["bleu"]


def test_score_rejects_misaligned_or_empty_references():
    with pytest.raises(ValueError, match="at least one reference"):
        score(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="2 hypotheses, 1 reference lists"):
        score(["a", "b"], [["a"]])


def test_evaluate_model_returns_aligned_hypotheses_and_settings(model, tok):
    m = evaluate_model(model, tok, ROWS, LENGTHS, num_beams=2, batch_size=4, device="cpu", ter=True)
    sources = encode(tok, [r["source"] for r in ROWS], LENGTHS.max_source)
    expected = decode(tok, [o[0] for o in generate_ids(model, sources, pad_id=tok.pad_token_id,
                                                        eos_id=tok.eos_token_id, max_new_tokens=10,
                                                        num_beams=2, batch_size=1)])
    assert m["hypotheses"] == expected  # input order, whatever the length-sorted batching did
    again = score(expected, [r["references"] for r in ROWS], ter=True)
    for key in ("bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "ter_signature", "rouge_signature"):
        assert m[key] == again[key]
    assert (m["eval_num_beams"], m["eval_batch_size"], m["max_new_tokens"]) == (2, 4, 10)
    assert "latency_ms" not in m  # costs are profiled separately, one model at a time
    assert [s["output"] for s in m["samples"]] == expected[:5]
    assert not any(k.startswith("bertscore") for k in m)  # off by default


def test_dev_loss_equals_per_example_cross_entropy(model, tok):
    rows = [{"source": ROWS[0]["source"], "target": "The Eagle serves French food."},
            *ROWS[1:5]]  # the rest use their first reference
    model.train()
    got = dev_loss(model, dev_pairs(tok, rows, LENGTHS), pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                   max_target=LENGTHS.max_target, device="cpu", batch_size=2)
    assert model.training  # mode restored
    model.eval()
    start = model.config.decoder_start_token_id
    total, tokens = 0.0, 0
    with torch.no_grad():
        for row in rows:
            src = tok(row["source"], truncation=True, max_length=LENGTHS.max_source).input_ids
            target = row["target"] if "target" in row else row["references"][0]
            tgt = tok(target, add_special_tokens=False).input_ids
            labels = tgt[: LENGTHS.max_target - 1] + [tok.eos_token_id]
            logits = model(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([[start] + labels[:-1]])).logits
            total += F.cross_entropy(logits[0], torch.tensor(labels), reduction="sum").item()
            tokens += len(labels)
    assert got == pytest.approx(total / tokens, rel=1e-5)
    assert 0 < got < 10


def test_bertscore_without_local_model_names_the_path(tmp_path, model, tok):
    missing = tmp_path / "roberta-large"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))) as err:
        bertscore(HYPS, REFS, missing)
    assert "huggingface-cli download" in str(err.value)
    with pytest.raises(FileNotFoundError, match="BERTScore model"):  # before any generation
        evaluate_model(model, tok, ROWS, LENGTHS, num_beams=1, batch_size=4, device="cpu",
                       bertscore_model=str(missing))


def test_bertscore_with_a_local_model(tmp_path):
    pytest.importorskip("bert_score")
    from transformers import BertConfig, BertModel, BertTokenizer

    words = sorted({w for t in HYPS + [r for refs in REFS for r in refs] for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizer(str(tmp_path / "vocab.txt"), model_max_length=64).save_pretrained(tmp_path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path)
    exact = bertscore(HYPS, [[h] for h in HYPS], tmp_path, num_layers=2)
    assert exact["bertscore_f1"] == pytest.approx(100, abs=1e-3)
    padded = bertscore(HYPS, [[h, "a river pub ."] for h in HYPS], tmp_path, num_layers=2)
    assert padded["bertscore_f1"] == pytest.approx(100, abs=1e-3)  # max over references
    assert "L2_no-idf" in exact["bertscore_signature"]
    with pytest.raises(ValueError, match="num_layers"):
        bertscore(HYPS, REFS, tmp_path)
