"""The Train side of a trial: what every Ray Train worker runs (`distill_worker`), and the
distillation itself as a plain function (`distill`, Ray-free so tests can call it).

Kept apart from `bench.trial` (the Tune side) so that the processes that only schedule a
trial — the Tune trial actor, the Train controller — never import the modelling stack.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray.train
import torch
from ray.train import Checkpoint

from bench.api_teacher.stage import (API_CACHE_LABEL, API_PT_LABEL, API_SLUG, API_TEACHER_LABEL, needs_scoring,
                                     read_description, read_usage, reads_aligned_targets, total_usage)
from bench.artifacts import local_artifact
from bench.data import (TOKENIZED, TRAIN_SPLITS, Lengths, encode_pts, encode_splits, load_splits, load_token_ids,
                        read_pts, tokenized_label)
from bench.distill.declare import method_from_definition
from bench.distill.loop import TrainingRun
from bench.distill.methods import RELATION_KINDS
from bench.distill.streams import build_streams
from bench.evaluate import dev_set, evaluate_model
from bench.flops import training_compute
from bench.lm import bare, is_seq2seq
from bench.models import shape_of
from bench.precision import autocast, autocast_dtype
from bench.pretrained import load_config, load_model, load_tokenizer, same_tokenizer
from bench.seeding import seed_everything
from bench.spec import TrainSpec, quality_settings
from bench.stages import DEV_REFERENCES, read_dev_references
from bench.storage import Location
from bench.student_init import parse_init
from bench.students import make_student
from bench.teacher_cache import TeacherCache, TeacherCaches, cache_label
from bench.trial import RESULT_FILE, STATE_FILE, PermanentError, _reason


def distill_worker(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """Ray Train entry point on every rank; rank 0 returns the test metrics."""
    entered = time.time()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    train_torch = None
    if cfg["device"] == "cuda" or world > 1:  # DDP and GPUs go through Train's torch utilities
        from ray.train import torch as train_torch
    device = train_torch.get_device() if cfg["device"] == "cuda" else torch.device("cpu")
    restored = ray.train.get_checkpoint()
    local = Path(tempfile.mkdtemp(prefix="kdbench-restore-"))
    try:
        state = None
        if restored is not None:
            with restored.as_directory() as d:
                if (Path(d) / RESULT_FILE).exists():  # finished before a failure: report what it found
                    return json.loads((Path(d) / RESULT_FILE).read_text()) if rank == 0 else None
                src = Path(d) / STATE_FILE.format(rank=rank)
                if src.exists():
                    state = local / src.name
                    shutil.copy(src, state)

        def report(metrics: dict, run: TrainingRun) -> None:
            due = metrics.pop("checkpoint")
            if not due:
                ray.train.report(metrics)
                return
            with tempfile.TemporaryDirectory() as d:
                run.save(Path(d) / STATE_FILE.format(rank=rank))
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))

        try:
            result = distill(cfg, rank, world, device, wrap=train_torch.prepare_model if world > 1 else None,
                             report=report, state=state)
            if result is not None:
                result["timing"]["worker_entered"] = entered
                result["node_id"] = ray.get_runtime_context().get_node_id()
        except (ValueError, KeyError, FloatingPointError, PermanentError) as exc:
            # deterministic: a retry would fail the same way, so it is recorded instead
            return {"permanent_error": _reason(exc), "traceback": traceback.format_exc()[-4000:]} if rank == 0 else None
        with tempfile.TemporaryDirectory() as d:  # the final metrics, so a retry after this point trains nothing
            if rank == 0:
                (Path(d) / RESULT_FILE).write_text(json.dumps(result, default=str))
            ray.train.report({"step": cfg["train"]["steps"], "final": True},  # ("done" is reserved by Tune)
                             checkpoint=Checkpoint.from_directory(d) if rank == 0 else None)
        return result
    finally:
        shutil.rmtree(local, ignore_errors=True)


def distill(cfg: dict[str, Any], rank: int, world: int, device, wrap=None, report=None,
            state: Path | None = None) -> dict[str, Any] | None:
    """Train one student with one KD method (plain function: Ray-free, so it can be tested).
    `report(metrics, run)` is called at every dev evaluation and checkpoint step; `state`: a
    saved `TrainingRun` state to continue from."""
    timing = {"setup_started": time.time()}
    torch.set_num_threads(max(1, round(cfg["cpus_per_worker"])))
    seed_everything(cfg["seed"])
    amp = autocast_dtype(cfg["precision"])
    method = method_from_definition(cfg["method_definition"])
    lengths = Lengths(**cfg["lengths"])
    paths = _local_paths(cfg["paths"], method)
    spec = TrainSpec(**cfg["train"])
    api = read_description(paths[API_TEACHER_LABEL]) if API_TEACHER_LABEL in paths else None
    if api is not None and needs_scoring(method) and not api["scoring"]["supported"]:
        raise PermanentError(f"{method.name} needs the API teacher to score given text (word-level KD on rows it "
                             f"did not write), and it cannot: {api['scoring']['reason']}")
    # an API teacher has no model: students are sized against its reference architecture
    teacher_dir = paths["teacher"] if api is None else str(Path(paths[API_TEACHER_LABEL]) / "reference")

    init = parse_init(cfg["student_init"])
    student, plan = make_student(init, teacher_dir, cfg["ratio"], cfg["seed"],
                                 max_positions=lengths.max_source + lengths.max_target + 2)
    teacher_tok = load_tokenizer(paths["tokenizer"])
    tok = load_tokenizer(init.source) if init.kind == "pretrained" else teacher_tok
    teacher_config = load_config(teacher_dir, "teacher")
    check_method_fits(method, student, teacher_config, shared_tokenizer=same_tokenizer(tok, teacher_tok),
                      student_name=init.label)

    # every text (gold targets, teacher PTs, dev, test) is tokenized with the student's tokenizer:
    # the task's has encoded the training texts once (`tokenized` artifacts); a student's own encodes here
    stored_ids = tok is teacher_tok
    splits = load_splits(paths["data"])
    ids = load_token_ids(paths[TOKENIZED]) if stored_ids else encode_splits(tok, splits, lengths)
    enc = {"inputs": {s: ids[f"inputs.{s}"] for s in TRAIN_SPLITS}, "gold": {"labeled": ids["gold.labeled"]},
           "teacher_pts": {}}
    for pt in method.pt_specs:  # an API teacher has one PT set, which every teacher-PT source reads
        label = pt.label if api is None else API_PT_LABEL
        enc["teacher_pts"][pt] = load_token_ids(paths[tokenized_label(label)]) if stored_ids else \
            encode_pts(tok, read_pts(paths[label]), lengths.max_target)
    streams = build_streams(method, enc, seed=cfg["seed"] * 1000 + rank)
    target_sets = [None if s.origin == "student_pt" else "gold" if s.origin == "gold" else
                   API_SLUG if api is not None else s.pts.slug for s in method.sources]
    # an API teacher's aligned log-probs are its only distributions: read whatever teacher_cache says
    cache = _teacher_cache(method, paths, api is not None) if cfg["teacher_cache"]["enabled"] or api else None
    online_rows = any(t is None or cache is None or not cache.has(t) for t in target_sets)

    student = student.to(device)
    if world > 1 and wrap is not None:
        student = wrap(student)
    teacher = None
    if method.needs_teacher_model and online_rows:
        if api is not None:
            teacher = _api_scorer(api, cfg["task"], splits, enc["inputs"], tok, lengths.max_target)
        else:
            teacher = load_model(paths["teacher"], "teacher").to(device).eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
    # labeled = 0: dev selection scores against the teacher's outputs for the dev inputs
    dev_rows = read_dev_references(paths[DEV_REFERENCES]) if DEV_REFERENCES in paths else \
        splits.splits["dev"]

    losses = [(term.build(spec.label_smoothing, spec.loss_normalization, shape_of(teacher_config).heads),
               term.weight) for term in method.losses]
    run = TrainingRun(student, streams, losses, spec, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                      max_target=lengths.max_target, device=device, teacher=teacher, teacher_cache=cache,
                      autocast_dtype=amp, noisy_teacher=method.noisy_teacher, auto_scale=method.auto_scale,
                      schedule=method.schedule,
                      dev=dev_set(tok, dev_rows, lengths, spec, cfg["metric"], cfg["bleu_tokenize"]),
                      seed=cfg["seed"] * 1000 + rank, target_sets=target_sets)
    if state is not None:  # a restart of this trial (a worker died): continue from its checkpoint
        run.load(state)
        run.stats.setdefault("resumed_at_steps", []).append(run.step)
    timing["train_started"] = time.time()
    stats = run.run(on_report=report, checkpoint_every=spec.checkpoint_every, log=cfg.get("log"))
    timing["train_finished"] = time.time()
    if rank != 0:
        return None
    metrics: dict[str, Any] = {}
    if cfg.get("evaluate_test", True):  # a search selects on dev only and never looks at test
        with autocast(amp, device):
            metrics = evaluate_model(bare(student), tok, splits.splits["test"], lengths, device=device,
                                     bleu_tokenize=cfg["bleu_tokenize"], **quality_settings(cfg["eval"]))
    timing["evaluated"] = time.time()
    shared = {"teacher_generation": sum(cfg["flops"].get(pt.label, 0.0) for pt in method.pt_specs),
              "teacher_cache": sum(v for k, v in cfg["flops"].items() if k.startswith("teacher_cache/")
                                   and cache is not None and k in _cache_labels(method))}
    metrics.update(realized_ratio=plan.realized_ratio, teacher_params=plan.teacher_params, params=plan.params,
                   student_shape=asdict(shape_of(plan.config)), train=stats, selection=stats["selection"],
                   pt_visits=stats.get("pt_visits"),
                   teacher_cache=cache.stats if cache is not None else None,
                   compute=training_compute(stats, bare(student).config, teacher_config if api is None else None,
                                            shared),
                   dev_loss=stats["curve"][-1]["dev_loss"] if stats["curve"] else None,
                   dev_references="teacher" if DEV_REFERENCES in paths else "gold",
                   token_ids="tokenized artifact" if stored_ids else "encoded in the trial (the student's tokenizer)")
    if (pts := method.sequence_level_pts) is not None:  # for the report's PT ablation
        metrics.update(pt_strategy=pts.strategy, pt_k=pts.k)
    if api is not None:
        metrics.update(api_teacher_usage=_api_usage(method, paths, teacher))
        if method.pt_specs:  # every teacher-PT source read the API's PT set (K = pts_per_input)
            metrics["pt_source"] = "api"
            if pts is not None:  # the description's spec is the one the PT set was keyed by
                metrics.update(pt_strategy="api", pt_k=api["spec"]["pts_per_input"])
    if cfg.get("save_to"):  # the distilled student, usable with from_pretrained (profiled after the grid)
        save_model(bare(student), tok, cfg["save_to"])
        if cfg.get("keep_student", True):
            metrics["student_dir"] = cfg["save_to"]
    metrics["timing"] = {**timing, "finished": time.time()}
    return metrics


def save_model(model, tokenizer, where: str) -> None:
    """`save_pretrained` of model and tokenizer to a path or a storage URI."""
    target = Location.of(where)
    if target.is_local:
        model.save_pretrained(str(target.local_path))
        tokenizer.save_pretrained(str(target.local_path))
        return
    with tempfile.TemporaryDirectory(prefix="kdbench-student-") as d:
        model.save_pretrained(d)
        tokenizer.save_pretrained(d)
        target.upload_dir(Path(d))


def _local_paths(stored: dict[str, str], method) -> dict[str, str]:
    """Verified local copies of the artifacts this trial reads (`local_artifact`: in place on a
    local store, this node's cache for an object store)."""
    pts = [*(pt.label for pt in method.pt_specs), *([API_PT_LABEL] if method.pt_specs else [])]
    needed = {"data", "tokenizer", TOKENIZED, "teacher", *pts, *map(tokenized_label, pts), *_cache_labels(method),
              API_TEACHER_LABEL, DEV_REFERENCES}
    if reads_aligned_targets(method):
        needed.add(API_CACHE_LABEL)
    return {k: str(local_artifact(v)) for k, v in stored.items() if k in needed}


def _cache_labels(method) -> list[str]:
    temps = method.cache_temperatures
    return [cache_label(t, temps[0]) for t in method.cached_targets] if len(temps) == 1 else []


def _teacher_cache(method, paths, api: bool = False) -> TeacherCaches | None:
    """The caches built for this method's fixed targets (None when it has none or cannot use them);
    with an API teacher, its PTs' aligned log-probs."""
    if api:
        found = API_CACHE_LABEL in paths and reads_aligned_targets(method)
        return TeacherCaches({API_SLUG: TeacherCache(paths[API_CACHE_LABEL])}) if found else None
    labels = [lab for lab in _cache_labels(method) if lab in paths]
    if not labels:
        return None
    return TeacherCaches({lab.removeprefix("teacher_cache/").rsplit("-t", 1)[0]: TeacherCache(paths[lab])
                          for lab in labels})


def _api_scorer(api: dict, task: str, splits, inputs: dict[str, list[list[int]]], tok, max_target: int):
    """The online teacher of rows without stored distributions: the endpoint scores them. The
    key comes from this worker's environment (never from the config)."""
    from bench.api_teacher import ApiTeacherError, ApiTeacherSpec, build_prompts
    from bench.api_teacher.online import ApiScoringTeacher

    spec = ApiTeacherSpec.model_validate(api["spec"])
    labeled = splits.splits["labeled"]
    prompts: dict[tuple[int, ...], str] = {}
    for split in ("labeled", "unlabeled"):
        texts = build_prompts(spec.prompt_for(task), splits.sources(split), labeled) if inputs[split] else []
        for ids, prompt in zip(inputs[split], texts):
            prompts.setdefault(tuple(ids), prompt)
    try:
        from bench.api_teacher.client import ApiTeacherClient

        client = ApiTeacherClient(spec, api["responses"], say=lambda m: print(f"[{task}] {m}", flush=True))
    except (ApiTeacherError, ImportError) as err:  # no key in this worker's environment, no openai
        raise PermanentError(str(err)) from None
    return ApiScoringTeacher(client, tok, prompts, k=spec.top_logprobs + 1, max_target=max_target)


def _api_usage(method, paths: dict[str, str], online) -> dict:
    """Requests, retries, cache hits, tokens and cost of the API artifacts this trial used (as
    recorded when they were built) and of its own scoring requests; `total` sums them."""
    used = [API_TEACHER_LABEL, DEV_REFERENCES, *([API_PT_LABEL] if method.pt_specs else [])]
    out = {label: read_usage(paths[label]) for label in used if label in paths}
    if online is not None:  # an ApiScoringTeacher
        out["online_scoring"] = online.usage()
    out["total"] = total_usage(list(out.values()))
    return out


def check_method_fits(method, student, teacher_config, *, shared_tokenizer: bool, student_name: str) -> None:
    """Refuse, before any training, a method that cannot work with this teacher-student pair."""
    if method.needs_teacher_model and not shared_tokenizer:
        raise ValueError(
            f"{method.name} compares teacher and student token distributions (word-level KD), which "
            f"needs one tokenizer, but student {student_name!r} has its own; use a sequence-level "
            f"method (ft, seq_kd, seq_kd_multi, sampling_pts) or a student with the teacher's tokenizer")
    if any(term.kind in RELATION_KINDS for term in method.losses):
        if not (is_seq2seq(student) and is_seq2seq(teacher_config)):
            raise ValueError(f"{method.name} distils attention/hidden-state relations: it needs an encoder-decoder "
                             f"teacher and student (student {student_name!r} is "
                             f"{'decoder-only' if not is_seq2seq(student) else 'encoder-decoder'})")
