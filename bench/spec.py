"""The experiment spec: a YAML file validated before any work starts.

Every model here forbids unknown keys, so a typo fails with the field's path. Names of tasks
and methods are checked against their registries, and errors list what is allowed.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PRESETS = ("default", "smoke", "full")


class SpecError(ValueError):
    """A spec that cannot run; the message names the field, the value and what is allowed."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sizes(Strict):
    """Examples per split (see tasks.base.SplitSizes); paper proportions labeled:unlabeled=1:4."""

    labeled: int = Field(2000, ge=1)
    unlabeled: int = Field(8000, ge=0)
    dev: int = Field(500, ge=1)
    test: int = Field(500, ge=1)
    teacher_pool: int = Field(16000, ge=0)
    references: int = Field(4, ge=1)


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
    def _heads_divide(self) -> "ModelSpec":
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by heads={self.heads}")
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
    dev_every: int = Field(50, ge=0)  # dev-loss evaluation period in steps (learning curves); 0 = never
    dev_examples: int = Field(200, ge=1)  # dev examples per evaluation (the first N of the dev split)


class TeacherSpec(Strict):
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec(steps=1000, batch_size=64)


class TaskEntry(Strict):
    name: str
    sizes: Sizes = Sizes()
    teacher: TeacherSpec = TeacherSpec()
    data_seed: int = 0

    @field_validator("name")
    @classmethod
    def _known_task(cls, v: str) -> str:
        from tasks import task_names

        if v not in task_names():
            raise ValueError(f"unknown task {v!r}; allowed: {', '.join(task_names())}")
        return v


class TokenizerSpec(Strict):
    vocab_size: int = Field(2000, ge=64)


class PseudoTargetSpec(Strict):
    """How the teacher's pseudo-targets are generated (once, shared by all trials)."""

    num_beams: int = Field(4, ge=1)
    batch_size: int = Field(128, ge=1)


class EvalSpec(Strict):
    num_beams: int = Field(1, ge=1)
    batch_size: int = Field(128, ge=1)
    latency_examples: int = Field(32, ge=1)


class Resources(Strict):
    device: Literal["cpu", "cuda"] = "cpu"
    precision: Literal["fp32", "bf16"] = "fp32"
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(0.99, gt=0)
    max_concurrent_trials: int | None = Field(None, ge=1)
    stage_cpus: float | None = Field(None, gt=0)  # per task's stage job; default: CPUs / tasks

    @model_validator(mode="after")
    def _bf16_needs_cuda(self) -> "Resources":
        if self.precision == "bf16" and self.device != "cuda":
            raise ValueError("precision 'bf16' needs device 'cuda' (allowed on cpu: 'fp32')")
        return self


class Storage(Strict):
    runs_dir: str = "runs"  # each run gets RUN_DIR = runs_dir/<name>-<timestamp>
    artifacts_dir: str | None = None  # shared stage outputs; default runs_dir/artifacts


class Spec(Strict):
    name: str = "experiment"
    tasks: list[TaskEntry] = Field(min_length=1)
    ratios: list[float] = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    seeds: list[int] = Field([0], min_length=1)
    tokenizer: TokenizerSpec = TokenizerSpec()
    student_train: TrainSpec = TrainSpec()
    pseudo_targets: PseudoTargetSpec = PseudoTargetSpec()
    eval: EvalSpec = EvalSpec()
    resources: Resources = Resources()
    storage: Storage = Storage()

    @field_validator("ratios")
    @classmethod
    def _ratios_compress(cls, v: list[float]) -> list[float]:
        for r in v:
            if r <= 1:
                raise ValueError(f"compression ratio {r} must be > 1 (teacher params / student params)")
        return v

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        from bench.distill.methods import method_names

        for m in v:
            if m not in method_names():
                raise ValueError(f"unknown method {m!r}; allowed: {', '.join(method_names())}")
        return v

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, v: list[TaskEntry]) -> list[TaskEntry]:
        names = [t.name for t in v]
        if len(set(names)) != len(names):
            raise ValueError(f"each task may appear once; got {names}")
        return v

    def task(self, name: str) -> TaskEntry:
        return next(t for t in self.tasks if t.name == name)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid spec {source}:"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            lines.append(f"  {path}: unknown key (value {value!r}); check spelling against the README")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"  {path} = {value!r}: {msg}")
    return "\n".join(lines)


def parse_spec(data: dict, source: str = "<dict>") -> Spec:
    if not isinstance(data, dict):
        raise SpecError(f"invalid spec {source}: top level must be a mapping, got {type(data).__name__}")
    try:
        return Spec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_format_errors(err, source)) from None


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    if not path.exists():
        raise SpecError(f"spec file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"spec {path} is not valid YAML: {err}") from None
    return parse_spec(data, str(path))


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return Path(str(resources.files("bench") / "specs" / f"{name}.yaml"))


def load_preset(name: str) -> Spec:
    return load_spec(preset_path(name))


def spec_to_yaml(spec: Spec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
