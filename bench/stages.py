"""Shared stages of one task, built once and reused by every trial and later runs:
data → tokenizer → token ids → teacher → teacher pseudo-targets (and their token ids) →
teacher cache, plus the teacher's own
evaluation (and, with no labeled examples, the teacher's outputs for the dev inputs, which
students select on). An API teacher (`teacher.api`) has no model: its stages are in
`_api_teacher_stages`, their outputs in the same formats.

Each stage's output is content-addressed in the `ArtifactStore` by everything that
determines it (device and precision included); `prepare_task` returns the hashes and paths
that trials need. Costs are not measured here: every model of a run is profiled after the
grid, one at a time (`bench.profiling`).
"""
from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.artifacts import Artifact, ArtifactStore
from bench.data import (TOKENIZED, TRAIN_SPLITS, Lengths, encode, encode_pts, encode_splits, load_splits,
                        load_token_ids, read_jsonl, read_pts, save_splits, save_token_ids, tokenized_label,
                        write_jsonl, write_pts)
from bench.distill.loop import train
from bench.distill.losses import CrossEntropy
from bench.distill.methods import PTSpec, Source
from bench.distill.streams import Stream
from bench.evaluate import bertscore, decode, dev_set, evaluate_model, looks_pretokenized, score
from bench.flops import forward_flops, generation_flops
from bench.generation import generate_ids
from bench.models import build_model, config_from_spec
from bench.precision import autocast, autocast_dtype
from bench.pretrained import load_model, load_tokenizer, model_fingerprint
from bench.seeding import seed_everything
from bench.spec import Spec, TaskEntry, quality_settings
from bench.teacher_cache import build_teacher_cache, cache_label
from bench.tokenizer import train_tokenizer
from tasks import Task

STAGE_VERSION = {"data": 2, "tokenizer": 1, "tokenized": 1, "teacher": 2, "pseudo_targets": 3, "teacher_cache": 1,
                 "teacher_dev": 1, "teacher_eval": 3}
DEV_REFERENCES = "teacher_dev"  # labeled = 0: the teacher's outputs for the dev inputs, references of dev selection
API_STAGE_VERSION = 1  # joins every API stage's key: bump when an API stage's output changes shape


def write_dev_references(d: Path, dev: list[dict], texts: list[str]) -> None:
    """The DEV_REFERENCES artifact: each dev input with the teacher's output as its one reference."""
    write_jsonl(d / "dev.jsonl", [{"source": r["source"], "references": [t]} for r, t in zip(dev, texts)])


def read_dev_references(d: str | Path) -> list[dict]:
    return read_jsonl(Path(d) / "dev.jsonl")


def pt_specs_needed(spec: Spec) -> list[PTSpec]:
    """Every distinct teacher-PT set the spec's methods train on."""
    return list(dict.fromkeys(pt for m in spec.methods for pt in spec.method(m).pt_specs))


def caches_needed(spec: Spec) -> list[tuple[str, float]]:
    """(target set, temperature) of every teacher cache the spec's methods can read: `gold` or
    a PT set's slug, for methods whose teacher terms are all word-level at one temperature."""
    if not spec.teacher_cache.enabled:
        return []
    out = []
    for name in spec.methods:
        method = spec.method(name)
        temps = method.cache_temperatures
        if len(temps) == 1:
            out += [(target, temps[0]) for target in method.cached_targets]
    return list(dict.fromkeys(out))


@dataclass
class TaskArtifacts:
    """What trials need from the shared stages of one task."""

    task: str
    lengths: Lengths
    metric: str = "bleu"  # the task's headline metric (a key of bench.evaluate.score)
    bleu_tokenize: str = "13a"  # sacreBLEU's tokenizer for BLEU (the task's choice)
    prompt: str = ""  # the task's prompt (prepended to every input)
    paths: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)
    build_seconds: dict[str, float] = field(default_factory=dict)
    flops: dict[str, float] = field(default_factory=dict)  # compute spent building each artifact
    notes: dict[str, str] = field(default_factory=dict)  # e.g. why an artifact was rebuilt
    teacher_eval: dict[str, Any] = field(default_factory=dict)
    api_teacher: dict[str, Any] | None = None  # an API teacher: model, endpoint, usage, shares, splits seen

    def add(self, art: Artifact, label: str) -> Artifact:
        self.paths[label] = str(art.location)  # storage (a path or a URI): nodes read it via local_artifact
        self.hashes[label] = art.hash
        self.reused[label] = art.reused
        self.build_seconds[label] = art.build_seconds
        if art.rebuilt_because:
            self.notes[label] = f"rebuilt: {art.rebuilt_because}"
        meta = art.meta()
        if "flops" in meta:
            self.flops[label] = float(meta["flops"])
        return art


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


def _beam_groups(pts: list[PTSpec], num_beams: int) -> dict[int, int]:
    """Beam width → the most PTs any set asks of a search at that width: one search serves every
    beam PT set of the same width (the top-k of a search are the first k of its top-K)."""
    out: dict[int, int] = {}
    for pt in pts:
        if pt.strategy == "beam":
            width = pt.generate_kwargs(num_beams)["num_beams"]
            out[width] = max(out.get(width, 0), pt.k)
    return out


def prepare_task(spec: Spec, entry: TaskEntry, store_root: str, say: Callable[[str], None] = print) -> TaskArtifacts:
    """Build (or reuse) every shared artifact of one task, in dependency order."""
    task = entry.task()  # the registered or custom task, with the entry's overrides
    store = ArtifactStore(store_root)
    out = TaskArtifacts(entry.name, Lengths(task.max_source_tokens, task.max_target_tokens), task.metric,
                        getattr(task, "bleu_tokenize", "13a"), task.prompt)
    device = torch_device(spec)
    amp = autocast_dtype(spec.resources.precision)
    runtime = {"device": spec.resources.device, "precision": spec.resources.precision}
    if spec.resources.stage_cpus:
        torch.set_num_threads(max(1, int(spec.resources.stage_cpus)))

    def stage(name: str, key: dict, build: Callable[[Path], None], label: str | None = None,
              extra_meta: Callable[[Path], dict] | None = None) -> Artifact:
        label = label or name
        art = out.add(store.get_or_build(name, {"v": STAGE_VERSION[name], **key}, build, extra_meta), label)
        if art.reused:
            built = art.meta().get("build_seconds", 0.0)
            say(f"[{entry.name}] {label}: reused cached {art.hash} (took {built:.0f}s when built); 0s now")
        elif art.rebuilt_because:
            say(f"[{entry.name}] {label}: stored copy was corrupt ({art.rebuilt_because}); rebuilt {art.hash} "
                f"in {art.build_seconds:.1f}s")
        else:
            say(f"[{entry.name}] {label}: built {art.hash} in {art.build_seconds:.1f}s")
        return art

    # data: bad data fails here, before any training, with the split, file and row
    data = stage("data", data_key(entry, task), lambda d: build_data(task, entry, d))
    splits = load_splits(data.path)
    refs = [ref for r in splits.splits["test"] for ref in r["references"]]
    say(f"[{entry.name}] BLEU uses sacreBLEU tokenize={out.bleu_tokenize}"
        + ("; the references look pre-tokenized: consider bleu_tokenize: none" if looks_pretokenized(refs)
           and out.bleu_tokenize != "none" else ""))

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

    # tokenized: what students train on, as ids, encoded once for every trial (`bench.data`)
    tokenized = stage("tokenized", {"data": data.hash, "tokenizer": tok_art.hash, "lengths": asdict(out.lengths)},
                      lambda d: save_token_ids(d, encode_splits(tok, splits, out.lengths)), label=TOKENIZED)

    @functools.cache  # read only when a stage is built (a second run reuses every stage)
    def data_ids() -> dict[str, list]:
        return load_token_ids(tokenized.path)

    def encoded_inputs(split: str) -> list[list[int]]:
        if split in TRAIN_SPLITS:
            return data_ids()[f"inputs.{split}"]
        return encode(tok, splits.sources(split), out.lengths.max_source)

    if entry.teacher.api is not None:  # an LLM behind an API: no model, no training
        _api_teacher_stages(spec, entry, out, stage, splits, tok, tok_art.hash, data.hash, store_root, say)
        return out

    # teacher: from scratch (or from a pretrained model) on labeled + the teacher-only pool, with
    # a larger budget and the same dev selection as students; a checkpoint is taken as it is
    teacher_key = {"data": data.hash, "tokenizer": tok_art.hash, **entry.teacher.model_dump(exclude_none=True),
                   "from": model_fingerprint(source), "seed": entry.data_seed, "lengths": asdict(out.lengths),
                   **runtime}

    def build_teacher(d: Path) -> None:
        seed_everything(entry.data_seed)
        if entry.teacher.checkpoint:
            model = load_model(entry.teacher.checkpoint, "teacher checkpoint")
            stats = {"steps": 0, "train_seconds": 0.0, "checkpoint": entry.teacher.checkpoint, "curve": []}
            say(f"[{entry.name}] teacher: checkpoint {entry.teacher.checkpoint} used as is (no training)")
        else:
            model = load_model(source, "pretrained teacher") if source else \
                build_model(config_from_spec(entry.teacher.model, tok), entry.data_seed)
            model = model.to(device)
            pool = splits.splits.get("teacher_pool", [])  # labeled + the teacher-only pool
            inputs = data_ids()["inputs.labeled"] + encode(tok, [r["source"] for r in pool], out.lengths.max_source)
            targets = data_ids()["gold.labeled"] + encode(tok, [r["target"] for r in pool], out.lengths.max_target,
                                                          add_eos=False)
            stream = Stream(Source("gold"), inputs, [[t] for t in targets], seed=entry.data_seed)
            tspec = entry.teacher.train
            stats = train(
                model, [stream], [(CrossEntropy(tspec.label_smoothing, tspec.loss_normalization), 1.0)],
                tspec, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                max_target=out.lengths.max_target, device=device, autocast_dtype=amp,
                dev=dev_set(tok, splits.splits["dev"], out.lengths, tspec, task.metric, out.bleu_tokenize)
                if tspec.dev_every else None,
                seed=entry.data_seed, log_every=max(1, tspec.steps // 5),
                log=lambda m: say(f"[{entry.name}] teacher step {m['step']}/{tspec.steps} loss {m['loss']:.3f}"
                                  + (f", dev loss {m['dev_loss']:.3f}" if "dev_loss" in m else "")),
            )
            stats["compute"] = {"student_forward": forward_flops(model.config, stats["source_tokens"],
                                                                 stats["target_tokens"], stats["rows"])}
            stats["compute"]["student_backward"] = 2 * stats["compute"]["student_forward"]
            stats["compute"]["total"] = 3 * stats["compute"]["student_forward"]
        model.save_pretrained(str(d))
        tok.save_pretrained(str(d))
        (d / "train_stats.json").write_text(json.dumps(stats, indent=2))

    teacher_art = stage("teacher", teacher_key, build_teacher,
                        extra_meta=lambda d: {"flops": json.loads((d / "train_stats.json").read_text())
                                              .get("compute", {}).get("total", 0.0)})
    teacher = None

    def load_teacher():
        nonlocal teacher
        if teacher is None:
            teacher = load_model(str(teacher_art.path), "teacher").to(device).eval()
        return teacher

    # teacher pseudo-targets for every labeled and unlabeled input, one set per PT spec needed
    num_beams = spec.pseudo_targets.num_beams
    needed = pt_specs_needed(spec)
    widths = _beam_groups(needed, num_beams)
    searches: dict[int, tuple[dict, dict]] = {}  # beam width → the widest search's PTs and cost

    def generate(pt: PTSpec) -> tuple[dict[str, list[list[str]]], dict[str, float]]:
        gen = pt.generate_kwargs(num_beams)
        k = widths.get(gen.get("num_beams"), pt.k) if pt.strategy == "beam" else pt.k
        if pt.strategy == "beam" and gen["num_beams"] in searches:  # the cost of the search it came from
            found, cost = searches[gen["num_beams"]]
            return {s: [c[:pt.k] for c in v] for s, v in found.items()}, {**cost, "shared_search": True}
        model = load_teacher()
        torch.manual_seed(entry.data_seed)
        pts, cost = {}, {"sources": 0, "source_tokens": 0, "generated_tokens": 0}
        for split in ("labeled", "unlabeled"):
            srcs = encoded_inputs(split)
            with autocast(amp, device):
                outs = generate_ids(
                    model, srcs, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                    max_new_tokens=out.lengths.max_target, num_return_sequences=k,
                    batch_size=max(1, spec.pseudo_targets.batch_size // k), device=device, **gen)
            pts[split] = [decode(tok, o) for o in outs]
            cost["sources"] += len(srcs)
            cost["source_tokens"] += sum(map(len, srcs))
            cost["generated_tokens"] += sum(len(x) + 1 for o in outs for x in o)
        beams = gen.get("num_beams", 1)
        flops = generation_flops(model.config, cost["sources"], cost["source_tokens"], cost["generated_tokens"] / k,
                                 beams=beams)
        cost = {"flops": flops, **cost, "beams": beams}
        if pt.strategy == "beam":
            searches[gen["num_beams"]] = (pts, cost)
        return {s: [c[:pt.k] for c in v] for s, v in pts.items()}, cost

    def build_pts(pt: PTSpec, d: Path) -> None:
        pts, cost = generate(pt)
        write_pts(d, pts)
        (d / "generation.json").write_text(json.dumps(cost))

    # the widest beam search at each width first, so narrower sets at that width reuse it
    order = sorted(needed, key=lambda p: (p.strategy != "beam", -p.k))
    pt_arts: dict[PTSpec, Artifact] = {}
    pt_ids: dict[PTSpec, Artifact] = {}
    for pt in order:
        key = {"teacher": teacher_art.hash, "data": data.hash, "pts": asdict(pt), "num_beams": num_beams,
               "seed": entry.data_seed, **runtime}
        pt_arts[pt] = stage("pseudo_targets", key, lambda d, pt=pt: build_pts(pt, d), label=pt.label,
                            extra_meta=lambda d: {"flops": json.loads((d / "generation.json").read_text()).get("flops", 0.0)})
        pt_ids[pt] = tokenize_pts(stage, pt_arts[pt], pt.label, tok, tok_art.hash, out.lengths.max_target)

    # teacher caches: top-k teacher distributions along gold targets and teacher PTs
    by_slug = {pt.slug: pt for pt in needed}
    cache_spec = spec.teacher_cache

    def target_set(name: str) -> dict[str, tuple[list, list]]:
        if name == "gold":
            return {"labeled": (encoded_inputs("labeled"), [[t] for t in data_ids()["gold.labeled"]])}
        pts = load_token_ids(pt_ids[by_slug[name]].path)
        return {s: (encoded_inputs(s), pts[s]) for s in TRAIN_SPLITS}

    def build_cache(name: str, temperature: float, d: Path) -> None:
        sets = {name: target_set(name)}
        index = build_teacher_cache(d, load_teacher(), sets, k=cache_spec.k, temperature=temperature,
                                    dtype=cache_spec.dtype, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                                    max_target=out.lengths.max_target, device=device,
                                    batch_size=cache_spec.batch_size, amp=amp)
        rows = sum(len(v[1]) * len(v[1][0]) for v in sets[name].values() if v[1])
        src = sum(len(x) * len(c) for v in sets[name].values() for x, c in zip(*v))
        tgt = sum(min(len(t), out.lengths.max_target - 1) + 1 for v in sets[name].values() for c in v[1] for t in c)
        index["flops"] = forward_flops(load_teacher().config, src, tgt, rows)
        (d / "cost.json").write_text(json.dumps({"flops": index["flops"]}))

    for name, temperature in caches_needed(spec):
        target_hash = "gold" if name == "gold" else pt_arts[by_slug[name]].hash
        key = {"teacher": teacher_art.hash, "data": data.hash, "tokenizer": tok_art.hash, "targets": name,
               "targets_hash": target_hash, "temperature": temperature, **cache_spec.model_dump(exclude={"enabled"}),
               "lengths": asdict(out.lengths), **runtime}
        stage("teacher_cache", key, lambda d, n=name, t=temperature: build_cache(n, t, d),
              label=cache_label(name, temperature),
              extra_meta=lambda d: json.loads((d / "cost.json").read_text()))

    if entry.sizes.labeled == 0:  # no labels: students select on the teacher's outputs for the dev inputs
        def build_dev(d: Path) -> None:
            dev = splits.splits["dev"]
            with autocast(amp, device):
                outs = generate_ids(load_teacher(), encoded_inputs("dev"), pad_id=tok.pad_token_id,
                                    eos_id=tok.eos_token_id, max_new_tokens=out.lengths.max_target,
                                    num_beams=spec.eval.num_beams, batch_size=spec.eval.batch_size, device=device)
            texts = decode(tok, [o[0] for o in outs])
            write_dev_references(d, dev, texts)

        stage("teacher_dev", {"teacher": teacher_art.hash, "data": data.hash, "num_beams": spec.eval.num_beams,
                              "lengths": asdict(out.lengths), **runtime}, build_dev, label=DEV_REFERENCES)

    # the teacher's own test-set row (evaluated once per task)
    def build_teacher_eval(d: Path) -> None:
        with autocast(amp, device):
            metrics = evaluate_model(load_teacher(), tok, splits.splits["test"], out.lengths, device=device,
                                     bleu_tokenize=out.bleu_tokenize, **quality_settings(spec.eval.model_dump()))
        metrics["train"] = json.loads((teacher_art.path / "train_stats.json").read_text())
        (d / "metrics.json").write_text(json.dumps(metrics, indent=2))

    ev = stage("teacher_eval", {"teacher": teacher_art.hash, "data": data.hash, "bleu_tokenize": out.bleu_tokenize,
                                **quality_settings(spec.eval.model_dump()), **runtime}, build_teacher_eval)
    out.teacher_eval = json.loads((ev.path / "metrics.json").read_text())
    return out


def tokenize_pts(stage: Callable, pt_art: Artifact, label: str, tok, tok_hash: str, max_target: int) -> Artifact:
    """The `tokenized` stage of a PT set (model or API): its candidates as the task tokenizer's
    ids, read by trials and by the teacher caches."""
    def build(d: Path) -> None:
        save_token_ids(d, candidates=encode_pts(tok, read_pts(pt_art.path), max_target))

    return stage("tokenized", {"pts": pt_art.hash, "tokenizer": tok_hash, "max_target": max_target}, build,
                 label=tokenized_label(label))


def _api_teacher_stages(spec: Spec, entry: TaskEntry, out: TaskArtifacts, stage: Callable, splits, tok,
                        tok_hash: str, data_hash: str, store_root: str, say: Callable[[str], None]) -> None:
    """The stages of an API teacher (`bench.api_teacher.stage`), after data and tokenizer:

    teacher          no model: the teacher's description, the architecture students are sized
                     against (`teacher.reference`) and, when a method needs it, whether the
                     endpoint can score given text (probed once)
    pseudo_targets   one PT set, `pseudo_targets/api`, that every teacher-PT source reads (K =
                     pts_per_input at the spec's temperature and top_p), in the format of model
                     PTs, with the completions' log-probs and the requests' usage and cost
    tokenized        that PT set's candidates as the students' token ids (`tokenized/pseudo_targets/api`)
    teacher_cache    the log-probs aligned to the student's tokens (word-level methods on PTs)
    teacher_dev      labeled = 0 only: the teacher's outputs for the dev inputs, the references of
                     dev selection (test keeps the real references)
    teacher_eval     the teacher's outputs on the test inputs (temperature 0, one each), scored

    PTs, dev outputs and evaluation are keyed by `ApiTeacherSpec.hash_key(task)` (what decides
    the outputs: no key, no operational setting); the answers themselves are cached outside
    every artifact (`response_cache_dir`), so a crash loses nothing and a rerun sends nothing.
    A client (which reads the key from the environment) is made only when something is built."""
    from bench.api_teacher.stage import (API_CACHE_LABEL, API_PT_LABEL, API_TEACHER_LABEL, DESCRIPTION_FILE,
                                         PT_MAPPING, USAGE_FILE, greedy, needs_scoring,
                                         reads_aligned_targets, response_cache_dir, total_usage, write_aligned_targets,
                                         write_outputs, write_pseudo_targets)

    api, task = entry.teacher.api, entry.name
    cache_dir = response_cache_dir(store_root)
    methods = [spec.method(m) for m in spec.methods]
    checked: list[bool] = []

    def client(api_spec):
        from bench.api_teacher.client import ApiTeacherClient

        c = ApiTeacherClient(api_spec, cache_dir, say=lambda m: say(f"[{task}] {m}"))
        if not checked:  # once per task, and only when something is built: a rerun sends nothing
            c.check_model()
            checked.append(True)
        return c

    def write_json(path: Path, data: dict) -> None:
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False))

    scoring_for = sorted(m.name for m in methods if needs_scoring(m))
    reference = entry.teacher.student_reference

    def build_description(d: Path) -> None:
        config_from_spec(reference, tok).save_pretrained(str(d / "reference"))
        scoring: dict[str, Any] = {"needed_by": scoring_for, "supported": None, "reason": "not probed: no method "
                                   "of the spec scores given text"}
        usage = None
        if scoring_for:
            c = client(api)
            support = c.probe_scoring()
            scoring.update(supported=support.supported, reason=support.reason)
            usage = c.usage()
        write_json(d / DESCRIPTION_FILE, {"spec": api.model_dump(mode="json"), "task": task,
                                          "responses": str(cache_dir), "reference": reference.model_dump(),
                                          "scoring": scoring})
        write_json(d / USAGE_FILE, {"usage": usage})

    described = stage("teacher", {"api_stage": API_STAGE_VERSION, "api": api.model_dump(mode="json"), "task": task,
                                  "reference": reference.model_dump(), "tokenizer": tok_hash,
                                  "scoring_for": scoring_for, "responses": str(cache_dir)},
                      build_description, label=API_TEACHER_LABEL)
    scoring = json.loads((described.path / DESCRIPTION_FILE).read_text())["scoring"]
    if scoring_for and not scoring["supported"]:
        say(f"[{task}] the API teacher cannot score given text, so {', '.join(scoring_for)} will fail before "
            f"training: {scoring['reason']}")

    usage_files = {API_TEACHER_LABEL: described.path}
    pt_art = cache_art = None
    if pt_specs_needed(spec):
        pt_key = {"api_stage": API_STAGE_VERSION, "api": api.hash_key(task), "data": data_hash}
        pt_art = stage("pseudo_targets", pt_key, lambda d: write_pseudo_targets(client(api), task, splits, d, say=say),
                       label=API_PT_LABEL)
        tokenize_pts(stage, pt_art, API_PT_LABEL, tok, tok_hash, out.lengths.max_target)
        usage_files[API_PT_LABEL] = pt_art.path
        if any(reads_aligned_targets(m) for m in methods):
            # the API's log-probs are the teacher's only distributions: built whatever teacher_cache says
            k, dtype, max_target = api.top_logprobs + 1, spec.teacher_cache.dtype, out.lengths.max_target
            cache_key = {"api_stage": API_STAGE_VERSION, "pts": pt_art.hash, "tokenizer": tok_hash, "k": k,
                         "max_target": max_target, "dtype": dtype}
            cache_art = stage("teacher_cache", cache_key, lambda d: write_aligned_targets(
                pt_art.path, tok, d, k=k, max_target=max_target, dtype=dtype), label=API_CACHE_LABEL)

    labeled = splits.splits["labeled"]
    evaluated = greedy(api)
    no_labels = entry.sizes.labeled == 0
    if no_labels:  # dev selection on the teacher's outputs for the dev inputs, as in the paper
        def build_dev(d: Path) -> None:
            dev = splits.splits["dev"]
            texts, record = write_outputs(client(evaluated), task, [r["source"] for r in dev], labeled, what="dev")
            write_dev_references(d, dev, texts)
            write_json(d / USAGE_FILE, record)

        dev_key = {"api_stage": API_STAGE_VERSION, "api": evaluated.hash_key(task), "data": data_hash}
        dev_art = stage("teacher_dev", dev_key, build_dev, label=DEV_REFERENCES)
        usage_files[DEV_REFERENCES] = dev_art.path

    quality = quality_settings(spec.eval.model_dump())

    def build_eval(d: Path) -> None:
        test = splits.splits["test"]
        started = time.perf_counter()
        hyps, record = write_outputs(client(evaluated), task, [r["source"] for r in test], labeled, what="test")
        references = [r["references"] for r in test]
        metrics = score(hyps, references, out.bleu_tokenize, quality.get("ter", False))
        if quality.get("bertscore_model"):
            metrics.update(bertscore(hyps, references, quality["bertscore_model"],
                                     num_layers=quality.get("bertscore_num_layers"),
                                     batch_size=quality["batch_size"], device=torch_device(spec)))
        metrics.update(eval_seconds=time.perf_counter() - started, eval_num_beams=None, eval_temperature=0.0,
                       max_new_tokens=api.max_tokens, hypotheses=hyps,
                       samples=[{"source": r["source"], "output": h} for r, h in zip(test[:5], hyps[:5])],
                       train={"steps": 0, "train_seconds": 0.0, "curve": [], "api": True})
        write_json(d / "metrics.json", metrics)
        write_json(d / USAGE_FILE, record)

    ev = stage("teacher_eval", {"api_stage": API_STAGE_VERSION, "api": evaluated.hash_key(task), "data": data_hash,
                                "bleu_tokenize": out.bleu_tokenize, **quality}, build_eval)
    usage_files["teacher_eval"] = ev.path
    out.teacher_eval = json.loads((ev.path / "metrics.json").read_text())

    records = {label: json.loads((path / USAGE_FILE).read_text()) for label, path in usage_files.items()}
    usage = {label: (r or {}).get("usage") for label, r in records.items()}
    cache_stats = json.loads((cache_art.path / "index.json").read_text())["stats"] if cache_art else {}
    shots = api.prompt_for(task).shots
    out.api_teacher = {
        "model": api.model, "endpoint": {"base_url": api.base_url, "kind": api.endpoint},  # the spec refuses credentials in it
        "served_models": sorted({m for u in usage.values() if u for m in u.get("served_models", [])}),
        "usage": {**usage, "total": total_usage(list(usage.values()))},
        "aligned_share": cache_stats.get("aligned_share"),
        "truncated_share": (records.get(API_PT_LABEL) or {}).get("truncated_share"),
        "scoring": scoring, "pt_mapping": PT_MAPPING if pt_art else None,
        "splits_seen": {
            "labeled": "none (sizes.labeled = 0)" if no_labels else
            ("inputs" if pt_art else "none") + (f"; the targets of {shots} as few-shot examples" if shots else ""),
            "unlabeled": "inputs" if pt_art else "none",
            "dev": "inputs: its outputs are the dev references (sizes.labeled = 0)" if no_labels else "none",
            "test": "inputs, for its own test row (its outputs are scored, never trained on)",
        },
        "dev_references": "teacher" if no_labels else "gold",
    }
