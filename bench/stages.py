"""Shared stages of one task, built once and reused by every trial and later runs:
data → tokenizer → teacher → teacher pseudo-targets, plus the teacher's own evaluation.

Each stage's output is content-addressed in the `ArtifactStore` by everything that
determines it; `prepare_task` returns the hashes and paths that trials need.
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.artifacts import Artifact, ArtifactStore
from bench.cost import profile_model
from bench.data import Lengths, encode, load_splits, save_splits
from bench.distill.loop import train
from bench.distill.losses import CrossEntropy
from bench.distill.methods import PTSpec, Source
from bench.distill.streams import Stream
from bench.evaluate import decode, evaluate_model
from bench.generation import generate_ids
from bench.models import build_model, config_from_spec
from bench.precision import autocast, autocast_dtype
from bench.pretrained import load_model, load_tokenizer, model_fingerprint
from bench.spec import Spec, TaskEntry
from bench.tokenizer import train_tokenizer
from tasks import Task

STAGE_VERSION = {"data": 2, "tokenizer": 1, "teacher": 1, "pseudo_targets": 2, "teacher_eval": 2}


def pt_label(pt: PTSpec) -> str:
    """Key of a PT set in `TaskArtifacts.paths` (e.g. `pseudo_targets/beam-k1`)."""
    return f"pseudo_targets/{pt.slug}"


def pt_specs_needed(spec: Spec) -> list[PTSpec]:
    """Every distinct teacher-PT set the spec's methods train on."""
    return list(dict.fromkeys(pt for m in spec.methods for pt in spec.method(m).pt_specs))


@dataclass
class TaskArtifacts:
    """What trials need from the shared stages of one task."""

    task: str
    lengths: Lengths
    metric: str = "bleu"  # the task's headline metric (a key of bench.evaluate.score)
    paths: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)
    build_seconds: dict[str, float] = field(default_factory=dict)
    teacher_eval: dict[str, Any] = field(default_factory=dict)
    teacher_profile: dict[str, Any] = field(default_factory=dict)  # measured in this run

    def add(self, art: Artifact, label: str) -> Artifact:
        self.paths[label] = str(art.path)
        self.hashes[label] = art.hash
        self.reused[label] = art.reused
        self.build_seconds[label] = art.build_seconds
        return art


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def torch_device(spec: Spec):
    if spec.resources.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("resources.device is 'cuda' but this process sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def data_key(entry: TaskEntry, task: Task) -> dict[str, Any]:
    """Everything that determines a task's data artifact: the task's definition and overrides,
    its data source (Hub id and revision, or the content hashes of local files), sizes and seed."""
    return {"task": task.name, "task_version": task.version, "sizes": asdict(entry.split_sizes()),
            "seed": entry.data_seed, "fingerprint": task.fingerprint()}


def build_data(task: Task, entry: TaskEntry, out_dir: Path) -> None:
    """The task's splits (one JSONL file per split) and `task.json`: the task's card (metric,
    prompt, lengths, data source) and how its splits were made (rows read, dropped, counts)."""
    splits = task.build(entry.split_sizes(), entry.data_seed)
    save_splits(splits, out_dir)
    card = {**task.describe(), "splits": splits.info}
    (out_dir / "task.json").write_text(json.dumps(card, indent=2, ensure_ascii=False, default=str))


def prepare_task(spec: Spec, entry: TaskEntry, store_root: str, say: Callable[[str], None] = print) -> TaskArtifacts:
    """Build (or reuse) every shared artifact of one task, in dependency order."""
    task = entry.task()  # the registered or custom task, with the entry's overrides
    store = ArtifactStore(store_root)
    out = TaskArtifacts(entry.name, Lengths(task.max_source_tokens, task.max_target_tokens), task.metric)
    device = torch_device(spec)
    amp = autocast_dtype(spec.resources.precision)
    if spec.resources.stage_cpus:
        torch.set_num_threads(max(1, int(spec.resources.stage_cpus)))

    def stage(name: str, key: dict, build: Callable[[Path], None], label: str | None = None) -> Artifact:
        label = label or name
        art = out.add(store.get_or_build(name, {"v": STAGE_VERSION[name], **key}, build), label)
        if art.reused:
            built = art.meta().get("build_seconds", 0.0)
            say(f"[{entry.name}] {label}: reused cached {art.hash} (took {built:.0f}s when built); 0s now")
        else:
            say(f"[{entry.name}] {label}: built {art.hash} in {art.build_seconds:.1f}s")
        return art

    # data: bad data fails here, before any training, with the split, file and row
    data = stage("data", data_key(entry, task), lambda d: build_data(task, entry, d))
    splits = load_splits(data.path)

    # tokenizer: trained on the students' training text only (never the teacher pool)
    # tokenizer: the pretrained teacher's own, or byte-level BPE trained on the students'
    # training text only (never the teacher pool)
    source = entry.teacher.source

    def build_tokenizer(d: Path) -> None:
        if source:
            load_tokenizer(source).save_pretrained(str(d))
            return
        texts = splits.sources("labeled") + [r["target"] for r in splits.splits["labeled"]]
        texts += splits.sources("unlabeled")
        train_tokenizer(texts, spec.tokenizer.vocab_size, d)

    tok_key = {"data": data.hash, "from": model_fingerprint(source)} if source else \
        {"data": data.hash, **spec.tokenizer.model_dump()}
    tok_art = stage("tokenizer", tok_key, build_tokenizer)
    tok = load_tokenizer(tok_art.path)

    # teacher: from scratch (or from a pretrained model) on labeled + the teacher-only pool, with
    # a larger budget; a checkpoint is taken as it is
    teacher_key = {"data": data.hash, "tokenizer": tok_art.hash, **entry.teacher.model_dump(exclude_none=True),
                   "from": model_fingerprint(source), "seed": entry.data_seed, "lengths": asdict(out.lengths)}

    def build_teacher(d: Path) -> None:
        seed_everything(entry.data_seed)
        if entry.teacher.checkpoint:
            model = load_model(entry.teacher.checkpoint, "teacher checkpoint")
            stats = {"steps": 0, "train_seconds": 0.0, "checkpoint": entry.teacher.checkpoint}
            say(f"[{entry.name}] teacher: checkpoint {entry.teacher.checkpoint} used as is (no training)")
        else:
            model = load_model(source, "pretrained teacher") if source else \
                build_model(config_from_spec(entry.teacher.model, tok), entry.data_seed)
            model = model.to(device)
            rows = splits.splits["labeled"] + splits.splits.get("teacher_pool", [])
            inputs = encode(tok, [r["source"] for r in rows], out.lengths.max_source)
            targets = encode(tok, [r["target"] for r in rows], out.lengths.max_target, add_eos=False)
            stream = Stream(Source("gold"), inputs, [[t] for t in targets], seed=entry.data_seed)
            steps = entry.teacher.train.steps
            stats = train(
                model, [stream], [(CrossEntropy(entry.teacher.train.label_smoothing), 1.0)],
                entry.teacher.train, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                max_target=out.lengths.max_target, device=device, autocast_dtype=amp,
                log_every=max(1, steps // 5),
                log=lambda m: say(f"[{entry.name}] teacher step {m['step']}/{steps} loss {m['loss']:.3f}"),
            )
        model.save_pretrained(str(d))
        tok.save_pretrained(str(d))
        (d / "train_stats.json").write_text(json.dumps(stats, indent=2))

    teacher_art = stage("teacher", teacher_key, build_teacher)
    teacher = None

    def load_teacher():
        nonlocal teacher
        if teacher is None:
            teacher = load_model(str(teacher_art.path), "teacher").to(device).eval()
        return teacher

    # teacher pseudo-targets for every labeled and unlabeled input, one set per PT spec needed
    def build_pts(pt: PTSpec, d: Path) -> None:
        model = load_teacher()
        gen = pt.generate_kwargs(spec.pseudo_targets.num_beams)
        torch.manual_seed(entry.data_seed)
        pts = {}
        for split in ("labeled", "unlabeled"):
            srcs = encode(tok, splits.sources(split), out.lengths.max_source)
            with autocast(amp, device):
                outs = generate_ids(
                    model, srcs, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                    max_new_tokens=out.lengths.max_target, num_return_sequences=pt.k,
                    batch_size=max(1, spec.pseudo_targets.batch_size // pt.k), device=device, **gen)
            pts[split] = [decode(tok, o) for o in outs]
        (d / "pseudo_targets.json").write_text(json.dumps(pts, ensure_ascii=False))

    for pt in pt_specs_needed(spec):
        key = {"teacher": teacher_art.hash, "data": data.hash, "pts": asdict(pt),
               "num_beams": spec.pseudo_targets.num_beams, "seed": entry.data_seed}
        stage("pseudo_targets", key, lambda d, pt=pt: build_pts(pt, d), label=pt_label(pt))

    # the teacher's own test-set row (evaluated once per task)
    def build_teacher_eval(d: Path) -> None:
        with autocast(amp, device):
            metrics = evaluate_model(load_teacher(), tok, splits.splits["test"], out.lengths, device=device,
                                     **spec.eval.model_dump())
        metrics["train"] = json.loads((teacher_art.path / "train_stats.json").read_text())
        (d / "metrics.json").write_text(json.dumps(metrics, indent=2))

    ev = stage("teacher_eval", {"teacher": teacher_art.hash, "data": data.hash, **spec.eval.model_dump(),
                                "device": spec.resources.device}, build_teacher_eval)
    out.teacher_eval = json.loads((ev.path / "metrics.json").read_text())

    # the teacher's costs are measured again in every run (never cached), so that teacher and
    # students are profiled on the same hardware in the same run
    test_sources = encode(tok, splits.sources("test")[: spec.eval.profile_examples], out.lengths.max_source)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, round(spec.resources.cpus_per_worker)))  # as many threads as a student gets
    with autocast(amp, device):
        out.teacher_profile = profile_model(
            load_teacher(), tok, test_sources, device=device, num_beams=spec.eval.profile_num_beams,
            batch_size=spec.eval.batch_size, latency_examples=spec.eval.latency_examples,
            max_new_tokens=out.lengths.max_target)
    torch.set_num_threads(threads)
    say(f"[{entry.name}] teacher profiled: {out.teacher_profile['latency_greedy_ms']:.1f} ms/example "
        f"(greedy, batch 1), {out.teacher_profile['throughput_eps']:.1f} examples/s")
    return out
