"""Model cards: valid Hub metadata whose numbers are the row's, and a body that says what the
student is (teacher, method, compression, metrics with CIs over seeds, training, loading)."""
from __future__ import annotations

import json

import pytest
import yaml
from transformers import T5Config, T5ForConditionalGeneration

from bench.modelcard import seed_summary, write_model_card


def tiny_t5(tok, path, d_model=8):
    """A real, tiny T5 student saved with save_pretrained (a few hundred KB)."""
    config = T5Config(vocab_size=len(tok), d_model=d_model, d_ff=16, d_kv=4, num_layers=1,
                      num_decoder_layers=1, num_heads=2, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    model = T5ForConditionalGeneration(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def student_row(task="d2t", method="seq_kd", ratio=4.0, seed=0, bleu=28.3, dev=30.0, dev_loss=2.1,
                student_dir=None, **extra):
    metrics = {
        "headline": "bleu", "bleu": bleu, "chrf": bleu + 20, "ter": 70.0 - bleu, "rougeL": bleu + 10,
        "bleu_signature": "nrefs:4|case:mixed|eff:no|tok:13a|smooth:exp|version:2.5.1",
        "dev_loss": dev_loss, "realized_ratio": ratio * 1.02, "teacher_params": 400_000,
        "latency_greedy_ms": 12.5,
        "selection": {"metric": "dev_bleu", "selected_step": 400, "value": dev, "steps_evaluated": 10},
        "samples": [{"source": "name[The Eagle], eatType[pub]", "output": "The Eagle is a pub."}],
    }
    if student_dir is not None:
        metrics["student_dir"] = str(student_dir)
    row = {
        "trial_key": f"{task}|student|{method}|random|r{ratio:g}|s{seed}", "status": "ok", "error": None,
        "role": "student", "task": task, "method": method, "ratio": ratio, "seed": seed,
        "student_init": "random", "bleu": bleu, "chrf": bleu + 20, "params": 100_000,
        "realized_ratio": ratio * 1.02, "latency_ms": 12.5, "run_id": "tiny-20250101",
        "versions": {"kdbench": "0.1.0"},
        "config": {"train": {"steps": 500, "lr": 0.003, "batch_size": 16, "warmup_steps": 50},
                   "lengths": {"max_target": 48}, "eval": {"num_beams": 4}},
        "metrics": metrics,
    }
    row.update(extra)
    return row


def teacher_row(task="d2t", bleu=59.6):
    return {"trial_key": f"{task}|teacher", "status": "ok", "role": "teacher", "task": task,
            "method": "teacher", "ratio": 1.0, "seed": 0, "bleu": bleu, "params": 400_000,
            "run_id": "tiny-20250101", "metrics": {"headline": "bleu", "bleu": bleu}}


def front_matter(path):
    text = path.read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_card_metadata_is_valid_and_its_numbers_are_the_rows(tmp_path, bpe_tokenizer):
    student = tiny_t5(bpe_tokenizer, tmp_path / "student")
    row = student_row()
    path = write_model_card(student, row, teacher_row=teacher_row())
    meta, body = front_matter(path)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text2text-generation"
    assert meta["tags"][:3] == ["kdbench", "knowledge-distillation", "d2t"]
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"]["name"] == "d2t (kdbench)" and result["task"]["type"] == "text2text-generation"
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values == {"bleu": 28.3, "chrf": 48.3, "ter": 70.0 - 28.3, "rougeL": 38.3}
    assert result["metrics"][0]["type"] == "bleu"  # the headline first
    assert result["metrics"][0]["args"]["signature"].startswith("nrefs:4")

    from huggingface_hub import ModelCard

    card = ModelCard.load(path)
    assert {(e.metric_type, e.metric_value) for e in card.data.eval_results} == set(values.items())
    assert {e.dataset_name for e in card.data.eval_results} == {"d2t (kdbench)"}

    for text in ("seq_kd", "400,000", "59.60",  # teacher params and its test BLEU
                 "| requested ratio (teacher / student params) | 4.00 |", "| realized ratio | 4.08 |",
                 "| BLEU | 28.30 |", "steps: 500, learning rate: 0.003, batch size: 16",
                 "kdbench 0.1.0", "AutoModelForSeq2SeqLM.from_pretrained(path)",
                 "max_new_tokens=48, num_beams=4", "`dev_bleu` = 30.00 at step 400",
                 "Sequence-level KD with pseudo-targets"):  # the method's description from the registry
        assert text in body, text


def test_card_with_seed_summary_and_a_custom_method(tmp_path, bpe_tokenizer):
    student = tiny_t5(bpe_tokenizer, tmp_path / "student")
    seeds = [student_row(method="mine", seed=s, bleu=b) for s, b in enumerate([20.0, 22.0, 24.0])]
    for row in seeds:
        row["config"]["custom_methods"] = [{"name": "mine", "description": "my own KD recipe"}]
    summary = seed_summary(seeds, ["bleu", "chrf"])
    assert summary["bleu"].mean == pytest.approx(22.0) and summary["bleu"].n == 3
    body = front_matter(write_model_card(student, seeds[1], summary=summary))[1]
    half = summary["bleu"].half_width  # t_{0.975,2} · 2 / √3
    assert half == pytest.approx(4.968, abs=1e-3)
    assert f"| BLEU | 22.00 | 22.00 ± {half:.2f} | 3 |" in body
    assert "| TER | 48.00 | n/a | n/a |" in body  # not summarised: says so
    assert "`mine`: my own KD recipe" in body and "not given (no teacher row)" in body
    # a summary read from the report's summary.csv (mean, ci, n) works the same
    body = front_matter(write_model_card(student, seeds[1], summary={"bleu": {"mean": 22.0, "ci": None, "n": 1}}))[1]
    assert "| BLEU | 22.00 | 22.00 ± n/a | 1 |" in body


def test_decoder_only_student_gets_text_generation_and_causal_loading(tmp_path, bpe_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path / "gpt"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(bpe_tokenizer), n_embd=8, n_layer=1, n_head=2,
                               n_positions=64)).save_pretrained(path)
    meta, body = front_matter(write_model_card(path, student_row()))
    assert meta["pipeline_tag"] == "text-generation"
    assert "AutoModelForCausalLM.from_pretrained(path)" in body and "+ tokenizer.eos_token" in body


def test_card_needs_a_saved_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        write_model_card(tmp_path, student_row())
    assert not (tmp_path / "README.md").exists()
    assert json.dumps(student_row())  # rows stay plain JSON
