"""The experiment spec: a YAML file validated before any work starts.

Every model here forbids unknown keys, so a typo fails with the field's path. Names of tasks
and methods are checked against their registries, and errors list what is allowed.
"""
from __future__ import annotations

import math
import re
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bench.api_teacher.spec import ApiTeacherSpec
from bench.student_init import ALLOWED as INITS_ALLOWED
from bench.student_init import parse_init
from bench.tracking import TrackingSpec

PRESETS = ("default", "smoke", "full", "paper", "tune")


class SpecError(ValueError):
    """A spec that cannot run; the message names the field, the value and what is allowed."""


VALUE_CHARS = 80  # a value shown in an error message is cut to about this many characters
MAX_PROBLEMS = 20  # problems listed per invalid spec (then "… and N more")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def short(value: Any, limit: int = VALUE_CHARS) -> str:
    """`repr(value)` cut to about `limit` characters: long strings show their start and length,
    long lists their first items and count, large mappings their keys — never a whole spec."""
    text = repr(value)
    if len(text) <= limit:
        return text
    if isinstance(value, str):  # its start and its end (a path's file name), then its length
        keep = max(8, limit - 24)
        return repr(value[: keep * 2 // 3] + "…" + value[-(keep // 3):]) + f" ({len(value):,} chars)"
    if isinstance(value, dict):
        keys = ", ".join(short(k, 20) for k in list(value)[:6])
        return f"{{a mapping of {len(value)} keys: {keys}{', …' if len(value) > 6 else ''}}}"
    if isinstance(value, (list, tuple)):
        shown: list[str] = []
        for item in value:
            piece = short(item, 24)
            if sum(len(x) + 2 for x in shown) + len(piece) > limit - 16:
                break
            shown.append(piece)
        return f"[{', '.join(shown)}, … ({len(value):,} items)]"
    return text[: limit - 1] + "…"


def _cut(text: str, limit: int) -> str:
    """A message kept to one line of at most `limit` characters (a backstop: messages should
    show values with `short` already)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _takes_float(annotation) -> bool:
    """Whether a field is a float (or float | None, or list[float])."""
    if annotation is float:
        return True
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) is list and args == (float,) or (
        float in args and all(a in (float, type(None)) for a in args))


class Strict(BaseModel):
    """Base of every spec model: unknown keys forbidden, numbers strict — an integer field takes
    integers only (not `true`, `"400"` or `400.0`), a float field any finite number (NaN and
    infinities are refused everywhere), also written as a string such as `1e-3` (YAML 1.1,
    which PyYAML reads, has no float without a dot: `1e-3` arrives as a string)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _numeric_strings(cls, data):
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, field in cls.model_fields.items():
            value = out.get(name)
            if not _takes_float(field.annotation):
                continue
            if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
                out[name] = float(value)
            elif isinstance(value, list):
                out[name] = [float(v) if isinstance(v, str) and _NUMBER.fullmatch(v.strip()) else v for v in value]
        return out


class Sizes(Strict):
    """Examples per split (see tasks.base.SplitSizes). In a task entry, the sizes left out take
    that task's defaults (`kdbench list`; built-in tasks: 2000 labeled : 8000 unlabeled, the
    paper's 1:4). Dataset tasks only: `unlabeled: null` = all the rest of train, `test: null` =
    all of the evaluation pool left after dev. `teacher_pool`: teacher-only training pairs
    (dataset tasks: 0 unless asked for). `labeled: 0` is the no-label setup (an API teacher, a
    checkpoint, or a teacher trained on the pool): methods that train on gold targets are
    refused, and dev selection scores against the teacher's outputs for the dev inputs (test
    keeps the real references)."""

    labeled: int = Field(2000, ge=0)
    unlabeled: int | None = Field(8000, ge=0)
    dev: int = Field(500, ge=1)
    test: int | None = Field(500, ge=1)
    teacher_pool: int = Field(16000, ge=0)
    # references per dev/test input: generated (built-in tasks), or kept at most (dataset tasks;
    # null = every reference the data has)
    references: int | None = Field(4, ge=1)


class ModelSpec(Strict):
    """An encoder-decoder built from a config (trained from scratch here)."""

    arch: Literal["t5", "bart"] = "t5"  # t5 (pre-norm, relative positions) learns to copy from scratch far faster
    d_model: int = Field(128, ge=8)
    ffn_dim: int = Field(512, ge=8)
    encoder_layers: int = Field(3, ge=1)
    decoder_layers: int = Field(3, ge=1)
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelSpec:
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by heads={self.heads}")
        if self.arch == "t5" and self.decoder_layers > self.encoder_layers:
            # transformers 5.x: T5 generate() fails with IndexError when the decoder is deeper
            raise ValueError(f"t5 needs decoder_layers ({self.decoder_layers}) <= encoder_layers "
                             f"({self.encoder_layers}): generation fails otherwise (transformers 5)")
        return self


class TrainSpec(Strict):
    """Optimisation budget of one training run (teacher or student)."""

    steps: int = Field(400, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(40, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    dev_every: int = Field(50, ge=0)  # dev evaluation period in steps (curves, selection); 0 = never
    dev_examples: int = Field(200, ge=1)  # dev examples of the dev loss (the first N of the dev split)
    # checkpoint selection (the paper's): keep the weights of the best dev evaluation — by the
    # task's headline metric of greedy outputs for the first `dev_metric_examples` dev inputs
    # (`dev_metric`), by the dev loss, or the last weights (`last`)
    select: Literal["dev_metric", "dev_loss", "last"] = "dev_metric"
    dev_metric_examples: int = Field(100, ge=1)
    # token: mean over every target token of the batch; example: per-example mean over its
    # tokens, then over the batch (KD4Gen's word-level KD)
    loss_normalization: Literal["token", "example"] = "token"
    checkpoint_every: int = Field(100, ge=0)  # steps between fault-tolerance checkpoints; 0 = none


class TeacherSpec(Strict):
    """The teacher: built from `model` and trained from scratch (default), or `pretrained` (a Hub
    name or local path, fine-tuned on the task with `train`; its tokenizer becomes the task's),
    or `checkpoint` (an already fine-tuned model: used as is, no training), or `api` (an LLM
    behind an OpenAI-compatible endpoint, `bench.api_teacher`: no model, no training; its
    outputs are the pseudo-targets and its log-probabilities the word-level targets).
    `reference` (API teachers only): the architecture that `ratios` size students against, since
    an API teacher's size is unknown (never trained; default: `ModelSpec()`)."""

    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec(steps=1000, batch_size=64)
    pretrained: str | None = None
    checkpoint: str | None = None
    api: ApiTeacherSpec | None = None
    reference: ModelSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TeacherSpec:
        given = [k for k in ("checkpoint", "pretrained", "api") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"give at most one of checkpoint, pretrained, api (got {', '.join(given)})")
        if given and "model" in self.model_fields_set and self.model != ModelSpec():  # (a stored spec has it)
            where = "the API" if given[0] == "api" else repr(getattr(self, given[0]))
            hint = " (to size students against an architecture, use teacher.reference)" if given[0] == "api" else ""
            raise ValueError(f"teacher.model describes a teacher built from scratch; with {given[0]} the "
                             f"teacher comes from {where} — remove one of them{hint}")
        if self.api is not None and "train" in self.model_fields_set and self.train != TeacherSpec().train:
            raise _error_at("TeacherSpec", ("train",), "an API teacher is not trained; remove teacher.train",
                            self.train.model_dump())
        if self.reference is not None and self.api is None:
            raise _error_at("TeacherSpec", ("reference",), "sizes students against an API teacher; a teacher "
                            "built, fine-tuned or loaded here has its own size (remove reference)",
                            self.reference.model_dump())
        if given and given[0] != "api":
            problem = missing_local_model(self.source)
            if problem:
                raise _error_at("TeacherSpec", (given[0],), problem, self.source)
        return self

    @property
    def source(self) -> str | None:
        """The pretrained model or checkpoint the teacher comes from (None: built from scratch, or an API)."""
        return self.checkpoint or self.pretrained

    @property
    def student_reference(self) -> ModelSpec:
        """The architecture students are sized against by `ratios` when the teacher is an API."""
        return self.reference or ModelSpec()


def looks_local(name: str) -> bool:
    """A path, not a Hub name: it exists here, or is written as one (/…, ./…, ../…, ~…)."""
    return Path(name).expanduser().exists() or name.startswith(("/", "./", "../", "~"))


def missing_local_model(name: str) -> str | None:
    """Why `name`, a model given by local path, cannot be loaded (None: fine, or a Hub name —
    those are looked up when the model is loaded, which may need the network)."""
    if not looks_local(name):
        return None
    path = Path(name).expanduser()
    if not path.exists():
        return ("this local path does not exist (relative paths are read from the current directory; a Hub "
                "name such as org/model is checked only when the model is loaded)")
    if not (path / "config.json").is_file():
        return "this local path is not a model directory written by save_pretrained (no config.json in it)"
    return None


def check_bertscore_model(model_path: str | Path) -> Path:
    """The local BERTScore model directory, or a FileNotFoundError saying how to provide it.
    kdbench never downloads a scoring model: evaluation must not depend on the network."""
    path = Path(model_path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"BERTScore model {str(model_path)!r} is not available locally (no config.json in that "
            f"directory). kdbench does not download scoring models: on a machine with network run e.g. "
            f"`huggingface-cli download roberta-large --local-dir {model_path}`, make the directory "
            f"readable on every node, and point the BERTScore model setting at it (or leave BERTScore off)")
    return path


BLEU_TOKENIZERS = ("13a", "intl", "none", "char", "zh", "ja-mecab", "ko-mecab", "flores101", "flores200")


def _check_bleu_tokenize(v: str | None) -> str | None:
    if v is not None and v not in BLEU_TOKENIZERS:
        raise ValueError(f"unknown sacreBLEU tokenizer {v!r}; allowed: {', '.join(BLEU_TOKENIZERS)}")
    return v


def _error_at(model: str, loc: tuple, message: str, value) -> ValidationError:
    """A validation error located at `loc` inside `model` (a plain ValueError would point at the
    whole model)."""
    return _errors_at(model, [(loc, message, value)])


def _errors_at(model: str, problems: list[tuple[tuple, str, Any]], kind: str = "value_error") -> ValidationError:
    """Several located errors at once ((loc, message, value) each). `kind="located"`: each message
    is a whole line already, path and value included (bench.distill.declare writes them so)."""
    from pydantic_core import InitErrorDetails, PydanticCustomError

    return ValidationError.from_exception_data(model, [InitErrorDetails(
        type=PydanticCustomError(kind, "{message}", {"message": message}), loc=loc, input=value)
        for loc, message, value in problems])


def _repeated(values: list) -> list:
    """The values that appear more than once, in order of first repetition (2 and 2.0 are one)."""
    seen: set = set()
    out: dict = {}
    for v in values:
        if v in seen:
            out.setdefault(v, None)
        seen.add(v)
    return list(out)


def _once(values: list, what: str, show=short) -> None:
    """ValueError naming the repeated values of a list that must not repeat any."""
    repeated = _repeated(values)
    if repeated:
        raise ValueError(f"{', '.join(show(v) for v in repeated[:5])} appear{'s' if len(repeated) == 1 else ''} "
                         f"more than once; each {what} may appear once")


def _located(model: str, err, value, prefix: tuple = ()) -> ValidationError:
    """A tasks.base.SettingError (with its dotted `field`) as a located validation error."""
    loc = prefix + tuple(int(p) if p.isdigit() else p for p in err.field.split("."))
    return _error_at(model, loc, str(err), value)


class LengthFilters(Strict):
    """Word-count bounds (whitespace words); an example outside them is dropped. None: no bound.
    The target checked is the first reference."""

    min_source_words: int | None = Field(None, ge=0)
    max_source_words: int | None = Field(None, ge=1)
    min_target_words: int | None = Field(None, ge=0)
    max_target_words: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> LengthFilters:
        from tasks.base import SettingError
        from tasks.dataset import LengthFilter

        try:
            LengthFilter(**self.model_dump())
        except SettingError as err:
            raise _located("LengthFilters", err, getattr(self, err.field)) from None
        return self


class DataLocation(Strict):
    """Where a dataset lives: `path` = a Hub dataset id ("org/name", with optional `config` and
    `revision`) or a local directory / file; or `files` = local files per split
    ({train: ..., validation: ..., test: ...}, a path or a list each). `format` (parquet, jsonl,
    json, csv) is inferred from the file extensions when left out. Relative paths are resolved
    against the current directory when the spec is read."""

    path: str | None = None
    files: dict[str, str | list[str]] | None = None
    format: Literal["parquet", "jsonl", "json", "csv"] | None = None
    config: str | None = None
    revision: str | None = None

    @field_validator("path")
    @classmethod
    def _absolute_local_path(cls, v: str | None) -> str | None:
        import os

        return os.path.abspath(v) if v is not None and os.path.exists(v) else v

    @field_validator("files")
    @classmethod
    def _files_per_split(cls, v: dict | None) -> dict | None:
        from tasks.sources import normalize_files

        return None if v is None else {k: list(paths) for k, paths in normalize_files(v).items()}

    def source_dict(self) -> dict:
        return self.model_dump(include={"path", "files", "format", "config", "revision"})

    @model_validator(mode="after")
    def _readable(self) -> DataLocation:
        from tasks.base import SettingError
        from tasks.sources import DataSource

        try:
            DataSource.from_dict(self.source_dict())
        except SettingError as err:
            raise _located(type(self).__name__, err, getattr(self, err.field)) from None
        return self


class DataSpec(DataLocation):
    """`data:` of a registered dataset task: read it from a local copy (offline use) or another
    Hub id instead of its default. `columns` maps the task's column names to this copy's
    ({task column: column here})."""

    columns: dict[str, str] = {}


class CustomTaskSpec(DataLocation):
    """`custom:` a task defined in the spec, from your own files or any Hub dataset.
    `source_field` -> `target_field`; `references_field` (optional) names a list of references on
    validation/test rows. Missing fields, empty targets, non-text values, an empty split or sizes
    larger than the data fail before any training, naming the split, file and row."""

    source_field: str = Field(min_length=1, description="the column holding each example's input text")
    target_field: str = Field(min_length=1, description="the column holding each example's target text")
    references_field: str | None = None
    prompt: str = ""
    metric: str = "bleu"
    bleu_tokenize: str = "13a"  # sacreBLEU's tokenizer for BLEU: `none` for pre-tokenized corpora
    max_source_tokens: int = Field(256, ge=8)
    max_target_tokens: int = Field(64, ge=4)
    filters: LengthFilters = LengthFilters()

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        from tasks.base import METRICS

        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r}; allowed: {', '.join(METRICS)}")
        return v

    @field_validator("bleu_tokenize")
    @classmethod
    def _known_tokenizer(cls, v: str) -> str:
        return _check_bleu_tokenize(v)


class TaskEntry(Strict):
    """One task of the spec: a registered task (built-in `d2t`, `qg`; Hub `xsum`, `squad_qg`,
    `art`; `shakespeare` from a local copy) with optional overrides, or a `custom` task."""

    name: str = Field(description="a registered task (`kdbench list`) or, with `custom:`, your own task's name")
    data: DataSpec | None = None  # registered dataset tasks: read a local copy / another Hub id
    custom: CustomTaskSpec | None = None  # a task of your own (then `name` is yours to choose)
    sizes: Sizes = Sizes()
    filters: LengthFilters | None = None  # override the task's default length filters
    prompt: str | None = None  # override the task's prompt (prepended to every input)
    max_source_tokens: int | None = Field(None, ge=8)  # override the task's lengths
    max_target_tokens: int | None = Field(None, ge=4)
    bleu_tokenize: str | None = None  # override sacreBLEU's tokenizer for BLEU (`none`: pre-tokenized text)
    teacher: TeacherSpec = TeacherSpec()
    data_seed: int = Field(0, ge=0, lt=2**32)

    @field_validator("bleu_tokenize")
    @classmethod
    def _known_tokenizer(cls, v: str | None) -> str | None:
        return _check_bleu_tokenize(v)

    @model_validator(mode="before")
    @classmethod
    def _task_default_sizes(cls, data):
        """Sizes left out of the entry take the task's defaults, not one size for every task."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return data
        from tasks import get_task, task_names
        from tasks.custom import DEFAULT_SIZES

        if data.get("custom") is not None:
            defaults = DEFAULT_SIZES
        elif data["name"] in task_names():
            defaults = get_task(data["name"]).default_sizes
        else:
            return data  # reported as an unknown task below
        given = data.get("sizes")
        if isinstance(given, Sizes):
            given = given.model_dump(include=given.model_fields_set)
        if given is not None and not isinstance(given, dict):
            return data  # reported as a type error
        from dataclasses import asdict

        return {**data, "sizes": {**asdict(defaults), **(given or {})}}

    @model_validator(mode="after")
    def _runnable(self) -> TaskEntry:
        from tasks import task_names
        from tasks.base import SettingError

        if self.custom is None and self.name not in task_names():
            raise _error_at("TaskEntry", ("name",), f"unknown task; allowed: "
                            f"{', '.join(task_names())} (or define your own with `custom:`)", self.name)
        if self.custom is not None:
            import re

            if self.name in task_names():
                raise _error_at("TaskEntry", ("name",), "is a registered task; give your custom task another name",
                                self.name)
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", self.name):
                raise _error_at("TaskEntry", ("name",), "a custom task name must start with a letter and use only "
                                "letters, digits, '_', '.', '-'", self.name)
            for key in ("data", "filters", "prompt", "max_source_tokens", "max_target_tokens", "bleu_tokenize"):
                if getattr(self, key) is not None:
                    raise _error_at("TaskEntry", (key,), f"a custom task sets {key} inside `custom:` (allowed "
                                    f"here: name, custom, sizes, teacher, data_seed)", getattr(self, key))
        try:
            self.task().check_runnable(self.split_sizes())
        except SettingError as err:
            value = self.model_dump()
            for part in err.field.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            raise _located("TaskEntry", err, value, ("custom",) if self.custom and not
                           err.field.startswith("sizes") else ()) from None
        return self

    def task(self):
        """The task this entry runs (`tasks.base.Task`), with the entry's overrides applied."""
        from tasks import get_task
        from tasks.custom import custom_task

        if self.custom is not None:
            return custom_task(self.name, **self.custom.model_dump())
        return get_task(self.name).configured(
            data=self.data.source_dict() | {"columns": self.data.columns} if self.data else None,
            filters=self.filters.model_dump() if self.filters else None, prompt=self.prompt,
            max_source_tokens=self.max_source_tokens, max_target_tokens=self.max_target_tokens,
            bleu_tokenize=self.bleu_tokenize)

    def split_sizes(self):
        """The entry's sizes as `tasks.base.SplitSizes`."""
        from tasks import SplitSizes

        return SplitSizes(**self.sizes.model_dump())


class TokenizerSpec(Strict):
    vocab_size: int = Field(2000, ge=64)


class PseudoTargetSpec(Strict):
    """How the teacher's pseudo-targets are generated (once, shared by all trials)."""

    num_beams: int = Field(4, ge=1)
    batch_size: int = Field(128, ge=1)


class TeacherCacheSpec(Strict):
    """The teacher cache (`bench/teacher_cache.py`): the teacher's top-`k` next-token log-probs
    along fixed targets (gold, teacher PTs), computed once and shared by every trial; `off`
    (in the spec: `teacher_cache: off`) runs the teacher online at every step instead."""

    enabled: bool = True
    k: int = Field(32, ge=1)
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    batch_size: int = Field(64, ge=1)


QUALITY_SETTINGS = ("num_beams", "batch_size", "bertscore_model", "bertscore_num_layers", "ter")


def quality_settings(eval_spec: dict[str, Any]) -> dict[str, Any]:
    """The settings of the quality evaluation (`bench.evaluate.evaluate_model`) from the spec's
    `eval` block as a dict; the rest of the block is for profiling."""
    return {k: eval_spec[k] for k in QUALITY_SETTINGS if k in eval_spec}


class EvalSpec(Strict):
    """Test-set evaluation (quality) and cost profile of every teacher and student."""

    num_beams: int = Field(1, ge=1)  # decoding of the quality evaluation
    batch_size: int = Field(128, ge=1)
    ter: bool = False  # also TER (slow: seconds per evaluation on long outputs)
    # cost profiles, after the grid, one model at a time: every task's teacher and the lowest seed
    # of each student system (one_seed), every student (all), or none (off)
    profile: Literal["one_seed", "all", "off"] = "one_seed"
    latency_examples: int = Field(32, ge=1)  # batch-1 latency (greedy and beam) over this many inputs
    profile_examples: int = Field(128, ge=1)  # throughput and peak memory over this many inputs
    profile_num_beams: int = Field(4, ge=1)  # beam width of the beam latency
    bertscore_model: str | None = None  # a local BERTScore model directory; None = no BERTScore
    bertscore_num_layers: int | None = Field(None, ge=1)

    @field_validator("bertscore_model")
    @classmethod
    def _local_bertscore_model(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                check_bertscore_model(v)
            except FileNotFoundError:
                raise ValueError("not a local BERTScore model directory (no config.json in it; kdbench never "
                                 "downloads scoring models): download one where there is network (e.g. "
                                 "`huggingface-cli download roberta-large --local-dir DIR`), make DIR readable on "
                                 "every node and give it here, or leave bertscore_model out (no BERTScore)") from None
        return v


class Resources(Strict):
    device: Literal["cpu", "cuda"] = "cpu"
    precision: Literal["fp32", "bf16"] = "fp32"
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(0.99, gt=0)
    max_concurrent_trials: int | None = Field(None, ge=1)
    max_failures: int = Field(1, ge=0)  # Train restarts of a failed worker group, from its last checkpoint
    stage_cpus: float | None = Field(None, gt=0)  # per task's stage job; default: CPUs / tasks
    # the cluster's autoscaler can add GPU nodes; trials wait for them (else device: cuda needs the
    # cluster to have the GPUs when the run starts)
    autoscale: bool = False

    @model_validator(mode="after")
    def _bf16_needs_cuda(self) -> Resources:
        if self.precision == "bf16" and self.device != "cuda":
            raise ValueError("precision 'bf16' needs device 'cuda' (allowed on cpu: 'fp32')")
        return self


class Storage(Strict):
    """Where runs and artifacts live: local paths, or URIs pyarrow reaches (s3://bucket/runs,
    gs://…; S3-compatible stores with ?endpoint_override=http://host:port). A cluster of several
    nodes needs URIs, or local paths on a filesystem every node shares (`shared_filesystem`)."""

    runs_dir: str = "runs"  # each run gets RUN_DIR = runs_dir/<name>-<timestamp>
    artifacts_dir: str | None = None  # shared stage outputs; default runs_dir/artifacts
    shared_filesystem: bool = False  # local paths are on NFS (or similar) that every node mounts
    save_students: bool = False  # keep every trained student (save_pretrained) in RUN_DIR/students/


RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
Seed = typing.Annotated[int, Field(ge=0, lt=2**32)]  # numpy's seed range


class Spec(Strict):
    name: str = "experiment"  # names the run directory: runs_dir/<name>-<timestamp> (see RUN_NAME)
    tasks: list[TaskEntry] = Field(min_length=1, description="a list of tasks such as [{name: d2t}]; `kdbench list` "
                                                             "shows them")
    ratios: list[float] = Field(min_length=1, description="a list of compression ratios > 1")
    custom_methods: list[dict[str, Any]] = []  # methods declared here (bench/distill/declare.py)
    methods: list[str] = Field(min_length=1, description="a list of KD methods: presets (`kdbench list` shows "
                                                         "them) or names declared in custom_methods")
    seeds: list[Seed] = Field([0], min_length=1)
    student_inits: list[str] = Field(["random"], min_length=1)  # see bench/student_init.py
    tokenizer: TokenizerSpec = TokenizerSpec()
    student_train: TrainSpec = TrainSpec()
    pseudo_targets: PseudoTargetSpec = PseudoTargetSpec()
    teacher_cache: TeacherCacheSpec = TeacherCacheSpec()
    eval: EvalSpec = EvalSpec()
    resources: Resources = Resources()
    storage: Storage = Storage()
    tracking: TrackingSpec = TrackingSpec()  # MLflow / TensorBoard / W&B (bench/tracking.py)
    search: dict[str, Any] | None = None  # search spaces of `kdbench tune` (bench/search.py)
    study: dict[str, Any] | None = None  # a study's claims (bench/studies.py): what the Findings test

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not RUN_NAME.fullmatch(v):
            raise ValueError("must be 1 to 64 letters, digits, '_', '.', '-', not starting with '.' or '-' (no "
                             "path separators): it names the run directory inside storage.runs_dir")
        return v

    @field_validator("teacher_cache", mode="before")
    @classmethod
    def _cache_off(cls, v):
        if v == "off" or v is False:
            return {"enabled": False}
        return v

    @field_validator("ratios")
    @classmethod
    def _ratios_compress(cls, v: list[float]) -> list[float]:
        small = [(i, r) for i, r in enumerate(v) if r <= 1]
        if small:
            raise _errors_at("Spec", [((i,), f"compression ratio {r:g} must be > 1 (teacher params / student "
                                             f"params)", r) for i, r in small])
        _once(v, "ratio", lambda r: f"{r:g}")
        return v

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        _once(v, "seed")
        return v

    @field_validator("custom_methods")
    @classmethod
    def _valid_custom_methods(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from bench.distill.declare import method_from_dict

        problems, names = [], []
        for i, data in enumerate(v):
            try:
                names.append(method_from_dict(data).name)
            except ValueError as err:
                problems.append(((i,), str(err), data))
        if problems:  # every method's first problem at once, each a whole line
            raise _errors_at("Spec", problems, kind="located")
        _once(names, "custom method name")
        _finite_everywhere(v)
        return v

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str], info: ValidationInfo) -> list[str]:
        from bench.distill.declare import resolve_method
        from bench.distill.methods import METHODS

        declared = info.data.get("custom_methods")
        problems = []
        for i, m in enumerate(v):
            if declared is None and m not in METHODS:
                continue  # custom_methods is invalid (reported): `m` may be declared there
            try:
                resolve_method(m, declared)
            except KeyError:
                custom = [d.get("name") for d in declared or []]
                problems.append(((i,), f"unknown method; allowed: {', '.join([*METHODS, *custom])}", m))
        if problems:
            raise _errors_at("Spec", problems)
        _once(v, "method")
        return v

    @field_validator("search", "study")
    @classmethod
    def _finite_blocks(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            _finite_everywhere(v)
        return v

    def method(self, name: str):
        """The `Method` called `name` (declared in this spec, or a preset)."""
        from bench.distill.declare import resolve_method

        return resolve_method(name, self.custom_methods)

    @field_validator("student_inits")
    @classmethod
    def _known_inits(cls, v: list[str]) -> list[str]:
        problems = []
        for i, text in enumerate(v):
            try:
                init = parse_init(text)
            except ValueError:
                problems.append(((i,), f"unknown student init; allowed: {', '.join(INITS_ALLOWED)}", text))
                continue
            missing = missing_local_model(init.source) if init.kind == "pretrained" else None
            if missing:
                problems.append(((i,), f"pretrained student: {missing}", text))
        if problems:
            raise _errors_at("Spec", problems)
        _once(v, "student init")
        return v

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, v: list[TaskEntry]) -> list[TaskEntry]:
        _once([t.name for t in v], "task")
        return v

    @model_validator(mode="after")
    def _dev_loss_for_adaptive_schedules(self) -> Spec:
        from bench.distill.schedule import AdaptiveSGO

        if self.student_train.dev_every == 0:
            adaptive = [m for m in self.methods if isinstance(self.method(m).schedule, AdaptiveSGO)]
            if adaptive:
                raise ValueError(f"student_train.dev_every = 0, but {', '.join(adaptive)} adapt(s) to the dev "
                                 f"loss (DistiLLM's schedule): set student_train.dev_every > 0")
        return self

    @model_validator(mode="after")
    def _methods_fit_teachers_and_labels(self) -> Spec:
        """Refuse, before any work, a method that cannot run on a task: gold targets where the
        labeled split is empty, teacher internals where the teacher is an API, word-level KD
        where the API returns no alternatives."""
        problems: list[tuple[tuple, str, Any]] = []
        for ti, entry in enumerate(self.tasks):
            where = f"task {entry.name!r}"
            api = entry.teacher.api
            if entry.sizes.labeled == 0:
                if api is None and not entry.teacher.checkpoint and entry.sizes.teacher_pool == 0:
                    problems.append((("tasks", ti, "sizes"), "the teacher trains on labeled + teacher_pool and "
                                     "both are 0: give a teacher_pool, a teacher checkpoint or an API teacher",
                                     entry.sizes.model_dump()))
                if api is not None and api.prompt_for(entry.name).shots:
                    problems.append((("tasks", ti, "teacher", "api", "prompt", "shots"), "few-shot examples come "
                                     "from the labeled split, and sizes.labeled = 0: use shots: 0",
                                     api.prompt_for(entry.name).shots))
            for mi, name in enumerate(self.methods):
                reason = _method_unfit(self.method(name), entry, api)
                if reason:
                    problems.append((("methods", mi), f"{name} cannot run on {where}: {reason}", name))
            if api is not None:
                for ii, init in enumerate(self.student_inits):
                    if init.startswith("shrink-"):
                        problems.append((("student_inits", ii), f"copies the teacher's layers, and the teacher "
                                         f"of {where} is an API (no weights): use random or pretrained:…", init))
        if problems:
            raise _errors_at("Spec", problems)
        return self

    @model_validator(mode="after")
    def _search_and_study(self) -> Spec:
        if self.search is not None:
            from bench.search import parse_search

            parse_search(self)  # ValueError naming the field, the value and what is allowed
        if self.study is not None:
            from bench.studies import parse_study

            parse_study(self)
        return self

    def task(self, name: str) -> TaskEntry:
        return next(t for t in self.tasks if t.name == name)


def _method_unfit(method, entry: TaskEntry, api: ApiTeacherSpec | None) -> str | None:
    """Why `method` cannot run on the task `entry` (None: it can)."""
    from bench.distill.methods import RELATION_KINDS

    if entry.sizes.labeled == 0:
        if any(s.origin == "gold" for s in method.sources):
            return ("it trains on gold targets, and sizes.labeled = 0 (no labeled examples); use a method on "
                    "teacher pseudo-targets (seq_kd, word_kd_pts, joint_teaching, …)")
        if any(s.inputs == ("labeled",) for s in method.sources):
            return "a source draws labeled inputs only, and sizes.labeled = 0"
    if api is None:
        return None
    if any(t.kind in RELATION_KINDS for t in method.losses):
        return ("it distils the teacher's attention or hidden states, and an API teacher exposes only its text "
                "and log-probabilities")
    if method.noisy_teacher:
        return "it runs the teacher with dropout active (noisy teacher), and an API teacher cannot"
    word = [t for t in method.losses if t.word_level]
    if not word:
        return None
    if not api.logprobs or api.top_logprobs < 1:
        return (f"word-level KD from an API teacher reads its top log-probabilities: set logprobs: true and "
                f"top_logprobs >= 1 (got logprobs={api.logprobs}, top_logprobs={api.top_logprobs}; without "
                f"alternatives every target would be one-hot on the pseudo-target token)")
    if any(t.temperature != 1.0 for t in word):
        return ("an API teacher's log-probabilities are at temperature 1 and only its top tokens are known, so "
                "they cannot be re-tempered: use temperature 1 in the word-level terms")
    k = api.top_logprobs + 1
    if any(t.teacher_top_k is not None and t.teacher_top_k > k for t in word):
        return f"teacher_top_k exceeds the {k} tokens an API position holds (top_logprobs + the chosen token)"
    return None


def _finite_everywhere(value: Any) -> None:
    """Refuse NaN and infinities anywhere inside a free-form block (search, study, custom methods),
    naming where."""
    bad: list[tuple[tuple, float]] = []

    def walk(x, loc):
        if isinstance(x, float) and not math.isfinite(x):
            bad.append((loc, x))
        elif isinstance(x, dict):
            for k, item in x.items():
                walk(item, loc + (str(k),))
        elif isinstance(x, list):
            for i, item in enumerate(x):
                walk(item, loc + (i,))

    walk(value, ())
    if bad:
        raise _errors_at("Spec", [(loc, "must be a finite number (NaN and infinities are not allowed)", x)
                                  for loc, x in bad])


# ---------------------------------------------------------------------------- error messages

def _strip(annotation):
    """X from X | None and Annotated[X, ...]."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _strip(typing.get_args(annotation)[0])
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if type(None) in typing.get_args(annotation) and len(args) == 1:
        return _strip(args[0])
    return annotation


def _walk(loc: tuple) -> tuple[Any, Any]:
    """(type, pydantic FieldInfo) of the spec's field at `loc`; (None, None) where `loc` leaves
    the models (free-form blocks, union member tags)."""
    ann: Any = Spec
    info = None
    for part in loc:
        ann = _strip(ann)
        origin = typing.get_origin(ann)
        if origin is list and isinstance(part, int):
            ann, info = typing.get_args(ann)[0], None
        elif origin is dict and isinstance(part, str):
            ann, info = typing.get_args(ann)[1], None
        elif isinstance(ann, type) and issubclass(ann, BaseModel) and part in ann.model_fields:
            info = ann.model_fields[part]
            ann = info.annotation
        else:
            return None, None
    return _strip(ann), info


_KIND = {"string_type": "a string", "list_type": "a list", "int_type": "an integer", "float_type": "a number",
         "bool_type": "true or false", "dict_type": "a mapping", "model_type": "a mapping", "none_required": "null"}


def _problem(e: dict) -> str:
    """What is wrong with the value of one pydantic error, and what is allowed, in words."""
    kind, value, ctx = e["type"], e.get("input"), e.get("ctx") or {}
    what = {bool: "a boolean", str: "a string", float: "a decimal", type(None): "null"}.get(type(value))
    if kind == "int_type":
        hint = f" (write {int(value)})" if isinstance(value, float) and value.is_integer() else \
            " (write it without quotes)" if isinstance(value, str) and value.strip().lstrip("-").isdigit() else ""
        return f"must be an integer{', not ' + what if what else ''}{hint}"
    if kind == "float_type":
        return f"must be a number{', not ' + what if what else ''}"
    if kind == "finite_number":
        return "must be a finite number (NaN and infinities are not allowed)"
    if kind == "bool_type":
        return "must be true or false"
    if kind == "string_type":
        return f"must be a string, not {what or type(value).__name__}"
    if kind in ("list_type", "dict_type"):
        return f"must be {_KIND[kind]}"
    if kind == "model_type":
        ann, _ = _walk(e["loc"])
        keys = f" with keys {', '.join(ann.model_fields)}" if isinstance(ann, type) and issubclass(ann, BaseModel) \
            else ""
        return f"must be a mapping{keys}"
    if kind == "literal_error":
        return f"not allowed; allowed: {ctx.get('expected', '')}".replace(" or ", ", ")
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()), "")
        return f"must be {bounds[kind]} {limit}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    return _cut(e["msg"].removeprefix("Value error, "), 600)


def _merged_unions(errors: list[dict]) -> list[dict]:
    """One error per value where pydantic reports each member of a union (`loc` ends in a type tag)."""
    out: list[dict] = []
    for e in errors:
        loc = e["loc"]
        tagged = bool(loc) and isinstance(loc[-1], str) and _walk(loc) == (None, None) and \
            _walk(loc[:-1]) != (None, None) and e["type"] in _KIND
        prev = out[-1] if out else None
        if tagged and prev is not None and prev.get("union") and prev["loc"] == loc[:-1] \
                and prev["input"] is e.get("input"):
            prev["kinds"].append(_KIND[e["type"]])
        elif tagged:
            out.append({"union": True, "loc": loc[:-1], "input": e.get("input"), "type": "union",
                        "kinds": [_KIND[e["type"]]]})
        else:
            out.append(e)
    return out


def _line(e: dict) -> str:
    path = ".".join(str(p) for p in e["loc"])
    value = e.get("input")
    kind = e["type"]
    if kind == "located":  # a whole line already (custom methods: path, value and problem)
        return "  " + _cut(e["msg"], 1000)
    if kind == "extra_forbidden":
        parent, _ = _walk(e["loc"][:-1])
        allowed = f"allowed: {', '.join(parent.model_fields)}" if isinstance(parent, type) and \
            issubclass(parent, BaseModel) else "check the spelling against the README"
        return f"  {path}: unknown key (value {short(value)}); {allowed}"
    if kind == "missing":
        _, info = _walk(e["loc"])
        description = getattr(info, "description", None)
        return f"  {path}: required" + (f" ({description})" if description else "")
    problem = "must be " + " or ".join(dict.fromkeys(e["kinds"])) if kind == "union" else _problem(e)
    if not path:
        return f"  {problem}"
    if isinstance(value, dict) and len(repr(value)) > VALUE_CHARS:  # a whole block: the problem names its values
        return f"  {path}: {problem}"
    return f"  {path} = {short(value)}: {problem}"


def _format_errors(err: ValidationError, source: str) -> str:
    """One line per problem — field path, value (cut to ~80 characters) and what is allowed."""
    errors = _merged_unions(err.errors())
    lines = [f"invalid spec {source}:", *(_line(e) for e in errors[:MAX_PROBLEMS])]
    if len(errors) > MAX_PROBLEMS:
        lines.append(f"  … and {len(errors) - MAX_PROBLEMS} more")
    return "\n".join(lines)


def parse_spec(data: dict, source: str = "<dict>") -> Spec:
    if data is None:
        raise SpecError(f"invalid spec {source}: it is empty (needs at least tasks, ratios and methods)")
    if not isinstance(data, dict):
        raise SpecError(f"invalid spec {source}: the top level must be a mapping of keys (name, tasks, ratios, "
                        f"methods, …), got {type(data).__name__} {short(data)}")
    try:
        return Spec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_format_errors(err, source)) from None


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, at: str, first: str):
        super().__init__(f"key {key!r} at {at} repeats the one at {first}")
        self.key, self.at, self.first = key, at, first


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key repeated in one mapping is an error (PyYAML keeps
    the last value silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, str] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` may be overridden by the mapping's own keys
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key: the constructor itself reports it
                mark = key_node.start_mark
                where = f"line {mark.line + 1}, column {mark.column + 1}"
                if first is not None:
                    raise _DuplicateKey(key, where, first)
                seen[key] = where
        return super().construct_mapping(node, deep)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A PyYAML error on one line: the problem and where (PyYAML's own text spans several lines)."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        context = f" ({err.context} at line {err.context_mark.line + 1})" if err.context and err.context_mark else ""
        return f"{err.problem} at line {mark.line + 1}, column {mark.column + 1}{context}"
    return " ".join(str(err).split())


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    if not path.exists():
        raise SpecError(f"spec file not found: {path}")
    if not path.is_file():
        raise SpecError(f"spec {path} is not a file (give the path of a YAML file)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - raw.rfind(b"\n", 0, err.start)
        raise SpecError(f"spec {path} is not UTF-8 text: byte 0x{raw[err.start]:02x} at offset {err.start} "
                        f"(line {line}, column {column}) cannot be decoded ({err.reason}); save the file as "
                        f"UTF-8") from None
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as err:
        raise SpecError(f"spec {path} {err.at}: key {short(err.key)} appears twice in one mapping (first at "
                        f"{err.first}); each key may appear once") from None
    except yaml.YAMLError as err:
        raise SpecError(f"spec {path} is not valid YAML: {_yaml_problem(err)}") from None
    return parse_spec(data, str(path))


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return Path(str(resources.files("bench") / "specs" / f"{name}.yaml"))


def load_preset(name: str) -> Spec:
    return load_spec(preset_path(name))


def spec_to_yaml(spec: Spec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
