"""The API teacher inside the engine, without Ray: the spec refuses what cannot run (no labels,
no teacher internals, no alternatives), the shared stages write PTs and word-level targets in the
formats trials read, training scores student PTs through the endpoint, and a method that needs
scoring fails before training, with the reason, when the endpoint cannot score."""
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bench.spec import SpecError, parse_spec, spec_to_yaml
from bench.teacher_cache import TeacherCache, join_rows, write_teacher_cache
from tests.conftest import tiny_spec_dict

KEY = "sk-engine-H4jK8mN2pQ6rS0tV"
ENV = "KDBENCH_ENGINE_API_KEY"
SERVED = "tiny-gpt2"


def api_block(base_url="http://127.0.0.1:9/v1", **kw) -> dict:
    return {"base_url": base_url, "model": SERVED, "api_key_env": ENV, "top_logprobs": 3, "max_tokens": 8,
            "backoff_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 10, **kw}


def api_spec_dict(methods, labeled=0, base_url="http://127.0.0.1:9/v1", **api) -> dict:
    data = tiny_spec_dict(methods=methods)
    task = data["tasks"][0]
    task["sizes"].update(labeled=labeled, teacher_pool=0, unlabeled=16)
    task["teacher"] = {"api": api_block(base_url, **api),
                       "reference": {"d_model": 32, "ffn_dim": 64, "encoder_layers": 1, "decoder_layers": 1,
                                     "heads": 2}}
    return data


def refused(data) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "test.yaml")
    return str(info.value)


# ---------------------------------------------------------------------------- the spec

@pytest.mark.parametrize("method", ["ft", "word_kd", "noisy_kd", "att_kd", "hidden_kd"])
def test_no_labels_refuses_every_method_on_gold_targets(method):
    msg = refused(api_spec_dict([method]))
    assert f"methods.0 = '{method}': {method} cannot run on task 'd2t': it trains on gold targets" in msg
    assert "sizes.labeled = 0" in msg


def test_no_labels_refuses_labeled_only_sources_and_an_untrainable_teacher():
    assert "draws labeled inputs only" in refused(api_spec_dict(["seq_kd_labeled"]))
    data = tiny_spec_dict(methods=["seq_kd"])
    data["tasks"][0]["sizes"].update(labeled=0, teacher_pool=0)
    assert "tasks.0.sizes: the teacher trains on labeled + teacher_pool and both are 0" in refused(data)
    data["tasks"][0]["sizes"]["teacher_pool"] = 24
    parse_spec(data)  # a teacher trained on its pool alone is fine
    msg = refused(api_spec_dict(["seq_kd"], prompt={"template": "{examples}\n{input}", "shots": 2}))
    assert "tasks.0.teacher.api.prompt.shots = 2: few-shot examples come from the labeled split" in msg


@pytest.mark.parametrize("method, api, said", [
    ("att_kd", {}, "attention or hidden states"),
    ("hidden_kd", {}, "attention or hidden states"),
    ("noisy_kd", {}, "dropout active"),
    ("word_kd_pts", {"top_logprobs": 0}, "set logprobs: true and top_logprobs >= 1"),
    ("joint_teaching", {"logprobs": False, "top_logprobs": 0}, "would be one-hot"),
])
def test_an_api_teacher_refuses_what_needs_its_internals(method, api, said):
    msg = refused(api_spec_dict([method], labeled=8, **api))
    assert f"{method} cannot run on task 'd2t'" in msg and said in msg


def test_an_api_teacher_refuses_tempered_terms_shrunk_students_and_a_model():
    data = api_spec_dict(["kd_t2"])
    data["custom_methods"] = [{"name": "kd_t2", "sources": [{"origin": "teacher_pt", "inputs": ["unlabeled"]}],
                               "losses": [{"kind": "word_kl", "temperature": 2.0}]}]
    assert "cannot be re-tempered" in refused(data)
    data = api_spec_dict(["seq_kd"])
    data["student_inits"] = ["shrink-alternating"]
    assert "student_inits.0 = 'shrink-alternating': copies the teacher's layers" in refused(data)
    data = api_spec_dict(["seq_kd"])
    data["tasks"][0]["teacher"]["model"] = {"d_model": 64}
    assert "with api the teacher comes from the API" in refused(data)
    data = tiny_spec_dict(methods=["seq_kd"])
    data["tasks"][0]["teacher"]["reference"] = {"d_model": 32}
    assert "tasks.0.teacher.reference" in refused(data) and "sizes students against an API teacher" in refused(data)


def test_a_valid_api_spec_survives_its_stored_copy_and_never_shows_a_pasted_key():
    spec = parse_spec(api_spec_dict(["seq_kd", "word_kd_pts", "joint_teaching"]))
    assert parse_spec(yaml.safe_load(spec_to_yaml(spec))) == spec  # a resumed run reads it back
    for where in ({"api_key_env": KEY}, {"api_key": KEY}, {"base_url": f"http://user:{KEY}@h/v1"},
                  {"base_url": f"http://h/v1?api_key={KEY}"}):
        data = api_spec_dict(["seq_kd"])
        data["tasks"][0]["teacher"]["api"].update(where)
        msg = refused(data)
        assert KEY not in msg and "api" in msg


# ---------------------------------------------------------------------------- the cache format

def test_precomputed_distributions_are_a_teacher_cache(tmp_path):
    k = 3
    labels = np.array([7, 9, 2])
    ids = np.array([[7, 4, 5], [9, 0, 0], [2, 0, 0]])
    with np.errstate(divide="ignore"):
        logp = np.log(np.array([[0.5, 0.2, 0.1], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32))
        tail = np.log(np.array([0.2, 0.0, 0.0]))
    entry = (labels, ids, logp, tail)
    index = write_teacher_cache(tmp_path, {"api": {"labeled": [], "unlabeled": [[entry], [entry]]}}, k=k,
                                dtype="float32", vocab_size=12, max_target=8, stats={"aligned_share": 1 / 3})
    assert index["sets"]["api"] == {"labeled": [0, 0, 1], "unlabeled": [0, 2, 1]}
    cache = TeacherCache(tmp_path)
    assert cache.stats["aligned_share"] == pytest.approx(1 / 3) and cache.stats["kl_full_cached_mean"] is None
    assert cache.stats["covered_mass_mean"] == pytest.approx((0.8 + 1 + 1) / 3)
    got = cache.lookup([("api", ("unlabeled", 1, 0))], torch.tensor([[7, 9, 2, -100]]), "cpu")
    assert got.ids[0, :3].tolist() == ids.tolist() and torch.allclose(got.logprobs[0, 0], torch.from_numpy(logp[0]))
    with pytest.raises(ValueError, match="built for other target tokens"):
        cache.lookup([("api", ("unlabeled", 0, 0))], torch.tensor([[7, 8, 2]]), "cpu")
    with pytest.raises(ValueError, match="shapes"):
        write_teacher_cache(tmp_path / "bad", {"api": {"unlabeled": [[(labels, ids[:, :2], logp, tail)]]}}, k=k,
                            dtype="float32", vocab_size=12, max_target=8)
    wide, rows = join_rows([(got, torch.tensor([1])), (cache.lookup([("api", ("unlabeled", 0, 0))],
                                                                     torch.tensor([[7, 9, 2, -100]]), "cpu"),
                                                        torch.tensor([0]))])
    assert rows.tolist() == [1, 0] and wide.ids.shape == (2, 4, 3)


def test_student_ids_that_are_not_the_canonical_split_keep_their_own_labels(bpe_tokenizer):
    from bench.api_teacher import Completion, align_to_student, student_pieces

    text = " French food"
    canonical = bpe_tokenizer(text, add_special_tokens=False)["input_ids"]
    chars = [bpe_tokenizer.convert_tokens_to_ids(bpe_tokenizer.tokenize(c)[0]) for c in text]  # one id per character
    assert chars != canonical
    texts, alignable = student_pieces(bpe_tokenizer, chars)
    assert "".join(texts) == text and all(alignable)
    api = Completion(text, [" French", " food"], [-0.5, -0.25], [[(" French", -0.5)], [(" food", -0.25)]],
                     [False, False])
    t = align_to_student(api, bpe_tokenizer, k=2, max_len=32, ids=chars)
    assert t.labels.tolist() == chars + [bpe_tokenizer.eos_token_id]
    assert not t.aligned.any()  # no API token covers a single character: one-hot on the student's own token
    e_acute = bpe_tokenizer("é", add_special_tokens=False)["input_ids"]
    assert "".join(student_pieces(bpe_tokenizer, e_acute)[0]) == "é"


# ---------------------------------------------------------------------------- stages and trials

@pytest.fixture(scope="module")
def key_in_env():
    before = os.environ.get(ENV)
    os.environ[ENV] = KEY
    yield
    if before is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = before


@pytest.fixture(scope="module")
def cannot_score(tmp_path_factory, bpe_tokenizer, key_in_env):
    """A server that cannot score given text; the shared stages of a no-label spec built on it."""
    from bench.stages import prepare_task
    from tests.openai_server import OpenAIServer

    pytest.importorskip("openai")
    root = tmp_path_factory.mktemp("api-stages")
    with OpenAIServer(bpe_tokenizer, api_key=KEY) as server:
        server.echo_supported = False
        spec = parse_spec(api_spec_dict(["seq_kd", "word_kd_pts", "joint_teaching"], base_url=server.base_url,
                                        pts_per_input=2))
        messages: list[str] = []
        art = prepare_task(spec, spec.tasks[0], str(root / "artifacts"), say=messages.append)
        yield spec, art, root, server, messages


def trial(spec, art, method):
    from bench.trial import worker_config
    from bench.worker import distill

    cfg = worker_config(spec.model_dump(mode="json"), asdict(art), task="d2t", method=method, ratio=2.0, seed=0)
    return distill(cfg, 0, 1, torch.device("cpu"))


def test_stages_write_pts_targets_and_accounting_in_the_engines_formats(cannot_score):
    from bench.data import encode, load_splits
    from bench.generation import labels_from_targets

    spec, art, root, server, messages = cannot_score
    assert set(art.hashes) == {"data", "tokenizer", "tokenized", "api_teacher", "pseudo_targets/api",
                               "tokenized/pseudo_targets/api", "teacher_cache/api-t1", "teacher_dev", "teacher_eval"}
    pts = json.loads((Path(art.paths["pseudo_targets/api"]) / "pseudo_targets.json").read_text())
    assert pts["labeled"] == [] and len(pts["unlabeled"]) == 16 and all(len(c) == 2 for c in pts["unlabeled"])
    # every cached entry was built for exactly the labels a trial makes of the stored PT text
    from bench.pretrained import load_tokenizer

    tok = load_tokenizer(art.paths["tokenizer"])
    cache = TeacherCache(art.paths["teacher_cache/api-t1"])
    for i, cands in enumerate(pts["unlabeled"]):
        for j, text in enumerate(cands):
            labels = labels_from_targets(encode(tok, [text], art.lengths.max_target, add_eos=False), tok.eos_token_id,
                                         art.lengths.max_target, "cpu")
            cache.lookup([("api", ("unlabeled", i, j))], labels, "cpu")  # raises if they differ
    dev = [json.loads(line) for line in (Path(art.paths["teacher_dev"]) / "dev.jsonl").read_text().splitlines()]
    real = load_splits(art.paths["data"]).splits["dev"]
    assert [r["source"] for r in dev] == [r["source"] for r in real] and all(len(r["references"]) == 1 for r in dev)
    api = art.api_teacher
    assert api["scoring"]["supported"] is False and "echo" in api["scoring"]["reason"]
    assert api["dev_references"] == "teacher" and 0 < api["aligned_share"] < 1
    assert api["usage"]["pseudo_targets/api"]["requests"] == 16 and api["usage"]["total"]["cost_usd"] is None
    assert any("joint_teaching will fail before training" in m for m in messages)
    assert "hypotheses" in art.teacher_eval and art.teacher_eval["bleu_signature"].startswith("nrefs:2")


def test_a_method_that_needs_scoring_fails_before_training_with_the_reason(cannot_score):
    from bench.trial import PermanentError

    spec, art, *_ = cannot_score
    with pytest.raises(PermanentError, match="joint_teaching needs the API teacher to score given text.*echo"):
        trial(spec, art, "joint_teaching")
    ok = trial(spec, art, "word_kd_pts")  # the others run
    assert ok["pt_source"] == "api" and ok["dev_references"] == "teacher" and ok["train"]["cached_teacher_rows"]
    assert ok["teacher_cache"]["api"]["aligned_share"] == art.api_teacher["aligned_share"]
    assert ok["api_teacher_usage"]["total"]["requests"] >= 16 and "online_scoring" not in ok["api_teacher_usage"]


def test_a_second_prepare_sends_nothing_and_no_file_holds_the_key(cannot_score):
    from bench.stages import prepare_task

    spec, art, root, server, _ = cannot_score
    sent = server.requests
    again = prepare_task(spec, spec.tasks[0], str(root / "artifacts"), say=lambda m: None)
    assert server.requests == sent and all(again.reused.values()) and again.hashes == art.hashes
    holding = [p for p in root.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert holding == []


def test_student_pts_are_scored_by_the_endpoint_and_cached(tmp_path, bpe_tokenizer, key_in_env):
    """ApiScoringTeacher on a batch of student-written rows: the distributions are the endpoint's
    log-probs of those very tokens, aligned with the batch's labels; the same batch again is free."""
    from bench.api_teacher import ApiTeacherClient, ApiTeacherSpec
    from bench.api_teacher.online import ApiScoringTeacher
    from bench.generation import labels_from_targets, pad_batch
    from tests.openai_server import OpenAIServer

    pytest.importorskip("openai")
    with OpenAIServer(bpe_tokenizer, api_key=KEY) as server:
        client = ApiTeacherClient(ApiTeacherSpec(**api_block(server.base_url)), tmp_path / "responses", say=print)
        sources = ["name[The Eagle]", "food[French]"]
        src_ids = [bpe_tokenizer(s)["input_ids"] for s in sources]
        written = [bpe_tokenizer(" The Eagle serves", add_special_tokens=False)["input_ids"], []]
        teacher = ApiScoringTeacher(client, bpe_tokenizer, {tuple(i): s for i, s in zip(src_ids, sources)},
                                    k=4, max_target=16)
        ids, mask = pad_batch(src_ids, bpe_tokenizer.pad_token_id, "cpu")
        labels = labels_from_targets(written, bpe_tokenizer.eos_token_id, 16, "cpu")
        out = teacher.sparse_outputs(ids, mask, labels)
        assert out.ids.shape == (2, labels.shape[1], 4) and out.temperature == 1.0
        assert server.requests == 1  # the empty row has nothing to score
        scored = client.score([sources[0]], [" The Eagle serves"])[0]  # answered from the cache
        n, label = len(written[0]), torch.tensor(written[0])
        column = (out.ids[0, :n] == label[:, None]).float().argmax(-1)  # where each row holds its own token
        assert (out.ids[0, torch.arange(n), column] == label).all()
        got = out.logprobs[0, torch.arange(n), column].tolist()
        assert got == pytest.approx(scored.token_logprobs, abs=1e-3)  # one tokenizer here: every token aligned
        assert out.ids[1, 0, 0] == bpe_tokenizer.eos_token_id and out.logprobs[1, 0, 0] == 0  # eos: one-hot
        before = server.requests
        teacher.sparse_outputs(ids, mask, labels)
        assert server.requests == before and teacher.usage()["cache_hits"] >= 1
        with pytest.raises(ValueError, match="not one of the task's labeled or unlabeled inputs"):
            teacher.sparse_outputs(ids.flip(1), mask.flip(1), labels)


def test_no_labels_with_a_teacher_trained_on_its_pool(tmp_path):
    """labeled = 0 is not only for API teachers: a teacher trained on the teacher-only pool writes
    the PTs, and students select on its outputs for the dev inputs."""
    from bench.stages import prepare_task

    data = tiny_spec_dict(methods=["seq_kd", "word_kd_pts"])
    data["tasks"][0]["sizes"].update(labeled=0, unlabeled=16)
    spec = parse_spec(data)
    art = prepare_task(spec, spec.tasks[0], str(tmp_path), say=lambda m: None)
    assert "teacher_dev" in art.paths and art.api_teacher is None
    pts = json.loads((Path(art.paths["pseudo_targets/beam-k1"]) / "pseudo_targets.json").read_text())
    assert pts["labeled"] == [] and len(pts["unlabeled"]) == 16
    for method in ("seq_kd", "word_kd_pts"):
        out = trial(spec, art, method)
        assert out["dev_references"] == "teacher" and "pt_source" not in out and 0 <= out["bleu"] <= 100


def test_profiling_skips_an_api_teacher(cannot_score, tmp_path):
    from bench.profiling import models_to_profile

    _, art, *_ = cannot_score
    assert models_to_profile(tmp_path, [], {"d2t": asdict(art)}, "one_seed") == []  # no model, nothing to time
