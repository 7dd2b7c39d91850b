"""Pretrained models by path: T5, BART and GPT-2 built from configs and saved with
save_pretrained; decoder-only students; teachers given as checkpoints or fine-tuned from a
pretrained model; tokenizer mismatches; offline errors."""
from __future__ import annotations

import pytest
import torch
from transformers import BartConfig, BartForConditionalGeneration, GPT2Config, GPT2LMHeadModel

from bench.generation import generate_ids, labels_from_targets, pad_batch
from bench.lm import forward_logits
from bench.pretrained import ModelUnavailableError, load_model, load_tokenizer, same_tokenizer
from bench.tokenizer import train_tokenizer
from bench.worker import distill
from tests.test_distill import _cfg


def _gpt2(tok, n_embd=32, layers=1) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=n_embd, n_layer=layers, n_head=2,
                                      n_positions=256, bos_token_id=tok.bos_token_id,
                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))


def _bart(tok, d=32) -> BartForConditionalGeneration:
    torch.manual_seed(0)
    return BartForConditionalGeneration(BartConfig(
        vocab_size=len(tok), d_model=d, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=2 * d, decoder_ffn_dim=2 * d, max_position_embeddings=256,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
        decoder_start_token_id=tok.eos_token_id, forced_eos_token_id=None))


def _save(model, tok, path):
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def teacher_tok(tiny_artifacts):
    _, art, _ = tiny_artifacts
    return load_tokenizer(art.paths["tokenizer"])


def test_decoder_only_logits_are_aligned_with_the_target_and_ignore_the_prompt(teacher_tok):
    model = _gpt2(teacher_tok).eval()
    eos = teacher_tok.eos_token_id
    sources = [[5, 6, 7, eos], [8, 9, eos]]
    targets = [[11, 12, 13], [14]]
    ids, mask = pad_batch(sources, teacher_tok.pad_token_id, "cpu")
    labels = labels_from_targets(targets, eos, 8, "cpu")
    logits = forward_logits(model, ids, mask, labels, pad_id=teacher_tok.pad_token_id, sep_id=eos)
    assert logits.shape[:2] == labels.shape
    for i, (s, t) in enumerate(zip(sources, targets)):  # one sequence alone, no padding at all
        alone = model(input_ids=torch.tensor([s + t + [eos]])).logits[0]
        for j in range(len(t) + 1):  # the logit predicting target token j follows prompt + t[:j]
            assert torch.allclose(logits[i, j], alone[len(s) - 1 + j], atol=1e-5)
    # changing the prompt's last token changes the prediction; the loss sees only target slots
    assert labels[1, 2:].eq(-100).all()


def test_decoder_only_generation_returns_only_new_tokens_in_input_order(teacher_tok):
    model = _gpt2(teacher_tok).eval()
    eos, pad = teacher_tok.eos_token_id, teacher_tok.pad_token_id
    sources = [[5, 6, 7, 8, 9, eos], [10, eos]]
    out = generate_ids(model, sources, pad_id=pad, eos_id=eos, max_new_tokens=4, batch_size=2, device="cpu")
    for s, o in zip(sources, out):
        alone = model.generate(input_ids=torch.tensor([s]), max_new_tokens=4, do_sample=False,
                               pad_token_id=pad, eos_token_id=eos)[0, len(s):].tolist()
        expected = alone[: alone.index(eos)] if eos in alone else alone
        assert o[0] == [t for t in expected if t != pad]


def test_decoder_only_student_distils_from_a_seq2seq_teacher(tiny_artifacts, teacher_tok, tmp_path):
    """GPT-2-style student, same tokenizer: word-level KD compares the same target positions."""
    spec, art, _ = tiny_artifacts
    teacher_params = sum(p.numel() for p in load_model(art.paths["teacher"]).parameters())
    student = _gpt2(teacher_tok, n_embd=16)
    ratio = round(teacher_params / sum(p.numel() for p in student.parameters()), 2)
    path = _save(student, teacher_tok, tmp_path / "gpt2")
    for method in ("word_kd", "seq_kd"):
        cfg = {**_cfg(spec, art, method), "ratio": ratio, "student_init": f"pretrained:{path}"}
        out = distill(cfg, 0, 1, torch.device("cpu"))
        assert 0 <= out["bleu"] <= 100 and out["train"]["steps"] == spec.student_train.steps
        assert (out["train"]["cached_teacher_rows"] > 0) == (method == "word_kd")  # cache aligned with its labels
    cfg = {**_cfg(spec, art, "att_kd"), "ratio": ratio, "student_init": f"pretrained:{path}"}
    with pytest.raises(ValueError, match="att_kd .* encoder-decoder"):
        distill(cfg, 0, 1, torch.device("cpu"))


def test_a_student_with_another_tokenizer_takes_sequence_level_methods_only(tiny_artifacts, tmp_path):
    spec, art, _ = tiny_artifacts
    other_dir = tmp_path / "other_tok"
    other = train_tokenizer(["completely different text for another vocabulary"] * 30, 200, other_dir)
    assert not same_tokenizer(other, load_tokenizer(art.paths["tokenizer"]))
    teacher_params = sum(p.numel() for p in load_model(art.paths["teacher"]).parameters())
    student = _bart(other, d=16)
    ratio = round(teacher_params / sum(p.numel() for p in student.parameters()), 2)
    path = _save(student, other, tmp_path / "bart")
    seq = {**_cfg(spec, art, "seq_kd"), "ratio": ratio, "student_init": f"pretrained:{path}"}
    out = distill(seq, 0, 1, torch.device("cpu"))  # PTs are text: re-tokenized for this student
    assert 0 <= out["bleu"] <= 100
    assert out["token_ids"].startswith("encoded in the trial")  # never the task tokenizer's stored ids
    for method in ("word_kd", "joint_teaching"):
        cfg = {**_cfg(spec, art, method), "ratio": ratio, "student_init": f"pretrained:{path}"}
        with pytest.raises(ValueError, match=f"{method} compares teacher and student token distributions"):
            distill(cfg, 0, 1, torch.device("cpu"))


def test_teacher_from_a_checkpoint_skips_training_and_a_pretrained_one_is_fine_tuned(tiny_artifacts, tmp_path):
    from bench.spec import parse_spec
    from bench.stages import prepare_task
    from tests.conftest import tiny_spec_dict

    _, art, root = tiny_artifacts
    tok = load_tokenizer(art.paths["tokenizer"])
    ckpt = _save(_bart(tok), tok, tmp_path / "bart_teacher")
    for mode in ("checkpoint", "pretrained"):
        data = tiny_spec_dict(methods=("seq_kd",))
        data["tasks"][0]["teacher"] = {mode: ckpt, "train": {"steps": 4, "batch_size": 4, "warmup_steps": 1}}
        spec = parse_spec(data)
        built = prepare_task(spec, spec.tasks[0], str(root), say=lambda m: None)
        stats = built.teacher_eval["train"]
        teacher = load_model(built.paths["teacher"])
        assert teacher.config.model_type == "bart"
        assert same_tokenizer(load_tokenizer(built.paths["tokenizer"]), tok)
        if mode == "checkpoint":
            assert stats["steps"] == 0 and stats["checkpoint"] == ckpt
            original = load_model(ckpt).state_dict()
            assert all(torch.equal(v, original[k]) for k, v in teacher.state_dict().items())
        else:
            assert stats["steps"] == 4
        assert built.teacher_eval["bleu"] >= 0


def test_teacher_spec_refuses_two_sources(tiny_artifacts):
    from bench.spec import SpecError, parse_spec
    from tests.conftest import tiny_spec_dict

    data = tiny_spec_dict()
    data["tasks"][0]["teacher"] = {"checkpoint": "/a", "pretrained": "/b"}
    with pytest.raises(SpecError, match="at most one of checkpoint, pretrained"):
        parse_spec(data)


@pytest.mark.timeout(120)  # a hang (network retries) fails instead of blocking the suite
@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_hub_model_error_names_it_and_the_fix(var, monkeypatch, tmp_path):
    monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    with pytest.raises(ModelUnavailableError) as info:
        load_model("kdbench-tests/no-such-model")
    message = str(info.value)
    assert "'kdbench-tests/no-such-model'" in message and "offline mode is on" in message
    assert "--local-dir" in message and "HF_HOME" in message


def test_missing_local_model_dir_is_named(tmp_path):
    with pytest.raises(ModelUnavailableError, match="no-model-here"):
        load_model(str(tmp_path / "no-model-here"))
