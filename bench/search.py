"""Search spaces of `kdbench tune`: the spec's `search:` block, checked like the rest of the spec.

    search:
      algorithm: random            # random | grid | optuna (TPE; `pip install kdbench[tune]`)
      samples: 8                   # trials per (task, ratio, method, student init) group
      time_budget_s: 1800          # and/or: wall-clock seconds per group
      seed: 0                      # the searcher's own randomness (random draws, TPE)
      scheduler: {kind: asha, grace_period: 100, reduction_factor: 3}   # or {kind: none}
      space:                       # searched for every method
        student_train.lr: {loguniform: [1.0e-4, 1.0e-2]}
        student_train.batch_size: {choice: [16, 32, 64]}
      methods:                     # per method, on top of `space` (the same key: this one wins)
        joint_teaching:
          method.losses.0.temperature: {uniform: [1.0, 4.0]}
          method.sources.1.start: {uniform: [0.2, 0.6]}
        seq_kd_multi:
          method.sources.0.pts.k: {choice: [1, 2, 4, 8]}

A parameter is a field of `student_train` (`student_train.<field>`) or a dotted path into the
method's YAML form (`method.<path>`, as `bench.distill.declare.method_to_dict` writes it; the
same paths `with_overrides` takes). Distributions: `uniform: [low, high]`, `loguniform: [low,
high]`, `int: [low, high]` and `logint: [low, high]` (both ends included), `choice: [v, ...]`.
Every bound and choice is checked against the field it sets (the method or `TrainSpec`
validates it), so a bad range fails here, before any work, with the field, the value and what
is allowed. A shared `method.` parameter must exist in every method of the spec.

Fixed by the search, not searchable: the dev evaluation that selection and ASHA read
(`select`, `dev_every`, `dev_examples`, `dev_metric_examples`), so every trial of a group is
scored the same way. A teacher pseudo-target set (`sources.N.pts.*` of a `teacher_pt` source)
is generated before training, so it takes discrete values only (each one is built once).

Budgets are per group and the same for every group (`budgets_are_equal` holds by
construction): `samples` trials and/or `time_budget_s` seconds, the same scheduler and the same
concurrency. Random search draws parameter p of trial i from a generator seeded by (seed, p,
i), so every method sees the same values of the parameters they share; a grid larger than
`samples` is cut to the same seeded subset for every group.
"""
from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ALGORITHMS = ("random", "grid", "optuna")
DISTRIBUTIONS = ("uniform", "loguniform", "int", "logint", "choice")
SECTIONS = ("student_train", "method")
# TrainSpec fields that decide how a trial is scored: one value per search
FIXED_TRAIN_FIELDS = {
    "select": "it decides what the search optimises",
    "dev_every": "ASHA and checkpoint selection read the dev evaluations it schedules",
    "dev_examples": "it decides the dev set every trial is scored on",
    "dev_metric_examples": "it decides the dev set every trial is scored on",
}
MAX_GRID_POINTS = 100_000
# where a search's records live (written by bench.tune, read by reports.tuning, which imports no Ray)
TUNING_DIR = "tuning"  # RUN_DIR/tuning: everything the search leaves
GROUPS_DIR = "groups"  # RUN_DIR/tuning/groups/<group slug>.json: a finished group (outcome + trial records)
SUMMARY_FILE = "tuning.json"  # RUN_DIR/tuning/tuning.json: the search as a whole


def budgets_equal(outcomes: list[dict[str, Any]]) -> bool:
    """Whether every group had the same allotted budget (samples, time, concurrency, scheduler)."""
    return len({json.dumps(o["budget"], sort_keys=True) for o in outcomes}) <= 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SchedulerSpec(_Strict):
    """Early stopping inside a group: ASHA on the dev objective, at training steps (`none`: every
    trial trains to the end). `grace_period` (steps, default `student_train.dev_every`: the first
    dev evaluation) is the first rung; each later rung is `reduction_factor` times further, and
    at each rung a trial below the top 1/`reduction_factor` of those that reached it stops."""

    kind: Literal["asha", "none"] = "asha"
    grace_period: int | None = Field(None, ge=1)
    reduction_factor: float = Field(3.0, gt=1)
    brackets: int = Field(1, ge=1)


class _SearchBlock(_Strict):
    algorithm: Literal["random", "grid", "optuna"] = "random"
    samples: int | None = Field(None, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    seed: int = 0
    startup_trials: int | None = Field(None, ge=1)  # TPE: random trials before it models (optuna only)
    scheduler: SchedulerSpec = SchedulerSpec()
    space: dict[str, Any] = {}
    methods: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True)
class Distribution:
    """One searched parameter's distribution (see the module docstring for the YAML forms)."""

    kind: str
    low: float | int | None = None
    high: float | int | None = None
    values: tuple = ()

    @property
    def log(self) -> bool:
        return self.kind in ("loguniform", "logint")

    @property
    def discrete(self) -> bool:
        return self.kind in ("choice", "int", "logint")

    @property
    def numeric(self) -> bool:
        return self.kind != "choice" or all(_is_number(v) for v in self.values)

    def sample(self, u: float) -> Any:
        """The value at quantile `u` in [0, 1) (inverse CDF), so one uniform draw makes one value."""
        if self.kind == "choice":
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        if self.kind == "uniform":
            return float(self.low + u * (self.high - self.low))
        if self.kind == "loguniform":
            return float(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
        if self.kind == "int":
            return int(min(self.high, self.low + math.floor(u * (self.high - self.low + 1))))
        lo, hi = math.log(self.low), math.log(self.high + 1)  # logint: log-uniform over [low, high + 1)
        return int(min(self.high, math.floor(math.exp(lo + u * (hi - lo)))))

    def grid_values(self) -> list:
        if self.kind == "choice":
            return list(self.values)
        if self.kind in ("int", "logint"):
            return list(range(int(self.low), int(self.high) + 1))
        raise ValueError(f"{self.kind} is continuous")

    def representatives(self) -> list:
        """Values that together check the whole range against the field (its ends, every choice)."""
        if self.kind == "choice":
            return list(self.values)
        ends = [self.low, self.high]
        return [int(v) for v in ends] if self.kind in ("int", "logint") else [float(v) for v in ends]

    def optuna(self):
        """The same distribution for Optuna (`OptunaSearch(space=...)`)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(list(self.values))
        if self.kind in ("int", "logint"):
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(float(self.low), float(self.high), log=self.log)

    def describe(self) -> str:
        if self.kind == "choice":
            return "choice{" + ", ".join(map(str, self.values)) + "}"
        return f"{self.kind}[{self.low:g}, {self.high:g}]"

    def to_yaml(self) -> dict:
        return {self.kind: list(self.values) if self.kind == "choice" else [self.low, self.high]}


@dataclass(frozen=True)
class Param:
    """A searched parameter: `path` is `student_train.<field>` or `method.<dotted path>`."""

    path: str
    dist: Distribution

    @property
    def section(self) -> str:
        return self.path.split(".", 1)[0]

    @property
    def field(self) -> str:
        return self.path.split(".", 1)[1]


@dataclass(frozen=True)
class Group:
    """One (task, ratio, method, student init): its own searcher, scheduler and budget."""

    task: str
    ratio: float
    method: str
    student_init: str = "random"

    @property
    def key(self) -> str:
        return f"{self.task}|r{self.ratio:g}|{self.method}|{self.student_init}"

    @property
    def label(self) -> str:
        init = "" if self.student_init == "random" else f" [{self.student_init}]"
        return f"{self.task} r={self.ratio:g} {self.method}{init}"

    @property
    def slug(self) -> str:
        import re

        name = re.sub(r"[^A-Za-z0-9._-]+", "_", self.key)[:60]
        return f"{name}-{hashlib.sha1(self.key.encode()).hexdigest()[:8]}"

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "ratio": self.ratio, "method": self.method, "student_init": self.student_init}


@dataclass(frozen=True)
class Budget:
    """What one group may spend: trials and/or wall-clock seconds, at `concurrency` trials at once
    (set from the cluster by `bench.tune`)."""

    samples: int | None
    time_budget_s: float | None

    def describe(self) -> str:
        parts = [f"{self.samples} trials" if self.samples else None,
                 f"{self.time_budget_s:g} s" if self.time_budget_s else None]
        return " and at most ".join(p for p in parts if p)


@dataclass(frozen=True)
class SearchSpec:
    """The validated `search:` block of a spec."""

    algorithm: str
    samples: int | None
    time_budget_s: float | None
    seed: int
    startup_trials: int | None
    scheduler: SchedulerSpec
    shared: tuple[Param, ...]
    per_method: dict[str, tuple[Param, ...]] = field(default_factory=dict)
    mode: str = "max"  # of the dev selection value: max (dev metric) or min (dev loss)
    metric: str = "dev_metric"  # TrainSpec.select of the spec: dev_metric | dev_loss
    max_steps: int = 400  # the longest a trial may train (for ASHA's rungs)
    grid_size: dict[str, int] = field(default_factory=dict)  # method -> points of its grid (grid search)

    def space(self, method: str) -> tuple[Param, ...]:
        """The parameters searched for `method`, in a stable order (shared, then its own)."""
        own = {p.path: p for p in self.per_method.get(method, ())}
        out = [own.pop(p.path, p) for p in self.shared]
        return tuple(out + sorted(own.values(), key=lambda p: p.path))

    def budget(self, method: str) -> Budget:
        """The same for every group (grid: `samples`, else the common grid size)."""
        samples = self.samples
        if self.algorithm == "grid" and samples is None:
            samples = self.grid_size.get(method)
        return Budget(samples, self.time_budget_s)

    def grace_period(self, dev_every: int) -> int:
        return self.scheduler.grace_period or dev_every

    def startup(self) -> int:
        """TPE's random start: `startup_trials`, else a third of the budget (at most Optuna's 10)."""
        if self.startup_trials:
            return self.startup_trials
        return max(1, min(10, (self.samples or 30) // 3))

    def to_yaml(self) -> dict[str, Any]:
        """The block as it was understood (for the tuning records)."""
        return {"algorithm": self.algorithm, "samples": self.samples, "time_budget_s": self.time_budget_s,
                "seed": self.seed, "scheduler": self.scheduler.model_dump(),
                "space": {p.path: p.dist.to_yaml() for p in self.shared},
                "methods": {m: {p.path: p.dist.to_yaml() for p in ps} for m, ps in self.per_method.items()},
                "selection": {"metric": self.metric, "mode": self.mode}}


def groups(spec) -> list[Group]:
    """Every (task, ratio, method, student init) the spec tunes, in grid order."""
    return [Group(t.name, r, m, i) for t in spec.tasks for r in sorted(spec.ratios) for m in spec.methods
            for i in spec.student_inits]


def overrides_from(searched: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Searched values ({path: value}) as a trial's `overrides` ({"student_train": {field: v},
    "method": {dotted path: v}}; empty sections left out)."""
    out: dict[str, dict[str, Any]] = {}
    for path, value in searched.items():
        section, name = path.split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


def draw_random(params: tuple[Param, ...], seed: int, index: int) -> dict[str, Any]:
    """Trial `index` of a random search: each parameter from its own stream (seed, path, index),
    so two methods that share a parameter get the same values of it."""
    import numpy as np

    out = {}
    for p in params:
        stream = int.from_bytes(hashlib.sha256(p.path.encode()).digest()[:4], "little")
        u = float(np.random.default_rng([seed, stream, index]).random())
        out[p.path] = p.dist.sample(u)
    return out


def grid_points(params: tuple[Param, ...], samples: int | None, seed: int) -> list[dict[str, Any]]:
    """Every point of the grid in order, or a seeded subset of `samples` points (the same subset
    for every grid of the same size)."""
    import numpy as np

    axes = [p.dist.grid_values() for p in params]
    points = [dict(zip([p.path for p in params], combo)) for combo in itertools.product(*axes)]
    if samples is None or samples >= len(points):
        return points
    keep = sorted(np.random.default_rng([seed, len(points)]).choice(len(points), size=samples, replace=False))
    return [points[int(i)] for i in keep]


def distinct_points(params: tuple[Param, ...]) -> int | None:
    """How many distinct configurations the space has (None: infinitely many)."""
    n = 1
    for p in params:
        if not p.dist.discrete:
            return None
        n *= len(p.dist.values) if p.dist.kind == "choice" else int(p.dist.high) - int(p.dist.low) + 1
    return n


def teacher_pt_params(spec, method: str, params: tuple[Param, ...]) -> list[Param]:
    """The parameters that change a teacher pseudo-target set (built before training)."""
    from bench.distill.declare import method_to_dict

    sources = method_to_dict(spec.method(method))["sources"]
    out = []
    for p in params:
        parts = p.field.split(".") if p.section == "method" else []
        if len(parts) >= 3 and parts[0] == "sources" and parts[1].isdigit() and parts[2] == "pts" \
                and int(parts[1]) < len(sources) and sources[int(parts[1])]["origin"] == "teacher_pt":
            out.append(p)
    return out


# ---------------------------------------------------------------------------- validation


class _Errors:
    """Collects (location under `search`, message, value) and raises them together as one
    located pydantic error, which `bench.spec` prints as `search.<path> = <value>: <message>`."""

    def __init__(self):
        self.items: list[tuple[tuple, str, Any]] = []

    def add(self, loc: tuple, message: str, value: Any) -> None:
        self.items.append((("search", *loc), message, value))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        from pydantic_core import InitErrorDetails, PydanticCustomError

        raise ValidationError.from_exception_data("Spec", [InitErrorDetails(
            type=PydanticCustomError("value_error", "{message}", {"message": msg}), loc=loc, input=value)
            for loc, msg, value in self.items])


def parse_search(spec) -> SearchSpec:
    """The spec's `search:` block, validated against the spec's methods and `student_train`.
    Raises a ValueError (a located pydantic `ValidationError`) naming every bad field, its value
    and what is allowed."""
    errors = _Errors()
    raw = spec.search
    if not isinstance(raw, dict):
        errors.add((), f"search must be a mapping (algorithm, samples, time_budget_s, seed, startup_trials, "
                       f"scheduler, space, methods), got {type(raw).__name__}", raw)
        errors.raise_if_any()
    try:
        block = _SearchBlock.model_validate(raw)
    except ValidationError as err:
        for e in err.errors():
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = f"unknown key; allowed: {', '.join(_SearchBlock.model_fields)}"
            elif e["loc"] and e["loc"][-1] == "algorithm":
                msg = f"unknown algorithm; allowed: {', '.join(ALGORITHMS)}"
            errors.add(tuple(e["loc"]), msg, e.get("input"))
        errors.raise_if_any()

    train = spec.student_train
    if train.select == "last":
        errors.add((), "a search selects by dev evaluation, but student_train.select is 'last' (allowed: "
                       "dev_metric, dev_loss)", train.select)
    if train.dev_every == 0:
        errors.add((), "a search scores trials by dev evaluation: set student_train.dev_every > 0 "
                       "(it is 0)", train.dev_every)
    if block.algorithm == "optuna" and importlib.util.find_spec("optuna") is None:
        errors.add(("algorithm",), "optuna (TPE) is not installed: pip install 'kdbench[tune]' (or use "
                                   "algorithm random or grid)", block.algorithm)
    if block.startup_trials is not None and block.algorithm != "optuna":
        errors.add(("startup_trials",), f"startup_trials is for algorithm optuna (TPE); this search is "
                                        f"{block.algorithm}", block.startup_trials)
    if block.algorithm != "grid" and block.samples is None and block.time_budget_s is None:
        errors.add((), "give a budget per group: search.samples and/or search.time_budget_s", None)
    if not block.space and not block.methods:
        errors.add(("space",), "nothing to search: give search.space and/or search.methods", None)
    unknown = [m for m in block.methods if m not in spec.methods]
    for m in unknown:
        errors.add(("methods", m), f"{m!r} is not a method of this spec; allowed: {', '.join(spec.methods)}",
                   block.methods[m])

    shared = tuple(p for p in (_param(k, v, ("space", k), errors) for k, v in block.space.items()) if p)
    for p in shared:
        for m in spec.methods:
            if m in block.methods and p.path in block.methods[m]:
                continue  # the method's own distribution replaces the shared one
            _check_param(spec, m, p, ("space", p.path), errors, shared=True)
    per_method: dict[str, tuple[Param, ...]] = {}
    for m, space in block.methods.items():
        if m in unknown:
            continue
        if not isinstance(space, dict):
            errors.add(("methods", m), "expected a mapping of parameter -> distribution", space)
            continue
        own = tuple(p for p in (_param(k, v, ("methods", m, k), errors) for k, v in space.items()) if p)
        for p in own:
            _check_param(spec, m, p, ("methods", m, p.path), errors, shared=False)
        per_method[m] = own
    errors.raise_if_any()

    result = SearchSpec(
        algorithm=block.algorithm, samples=block.samples, time_budget_s=block.time_budget_s, seed=block.seed,
        startup_trials=block.startup_trials, scheduler=block.scheduler, shared=shared, per_method=per_method,
        mode="min" if train.select == "dev_loss" else "max", metric=train.select)
    result = _with_steps(spec, result)
    _check_budgets(spec, result, errors)
    errors.raise_if_any()
    return result


def _param(path: Any, data: Any, loc: tuple, errors: _Errors) -> Param | None:
    if not isinstance(path, str) or "." not in path or path.split(".", 1)[0] not in SECTIONS:
        errors.add(loc, "a parameter is student_train.<field> or method.<dotted path into the method> "
                        "(e.g. student_train.lr, method.losses.0.temperature)", path)
        return None
    dist = _distribution(data, loc, errors)
    return Param(path, dist) if dist else None


def _distribution(data: Any, loc: tuple, errors: _Errors) -> Distribution | None:
    forms = "{uniform: [low, high]}, {loguniform: [low, high]}, {int: [low, high]}, {logint: [low, high]}, " \
            "{choice: [v1, v2, ...]}"
    if not isinstance(data, dict) or len(data) != 1:
        errors.add(loc, f"expected one distribution, one of {forms}", data)
        return None
    kind, args = next(iter(data.items()))
    if kind not in DISTRIBUTIONS:
        errors.add(loc, f"unknown distribution {kind!r}; allowed: {', '.join(DISTRIBUTIONS)}", data)
        return None
    if kind == "choice":
        if not isinstance(args, list) or not args:
            errors.add(loc, "choice needs a non-empty list of values", args)
            return None
        values = tuple(_number(v) if isinstance(v, str) and _number(v) is not None else v for v in args)
        if any(isinstance(v, (dict, list)) for v in values):
            errors.add(loc, "choice values must be plain values (numbers, strings, booleans, null)", args)
            return None
        if len(set(map(repr, values))) != len(values):
            errors.add(loc, "choice values must be distinct", args)
            return None
        return Distribution("choice", values=values)
    if not isinstance(args, list) or len(args) != 2:
        errors.add(loc, f"{kind} needs [low, high]", args)
        return None
    low, high = (_number(v) for v in args)  # YAML reads 1e-4 (no dot) as a string
    if low is None or high is None:
        errors.add(loc, f"{kind} bounds must be numbers", args)
        return None
    if kind in ("int", "logint"):
        if low != int(low) or high != int(high):
            errors.add(loc, f"{kind} bounds must be integers", args)
            return None
        low, high = int(low), int(high)
    if not low < high:
        errors.add(loc, f"{kind} needs low < high", args)
        return None
    if kind in ("loguniform", "logint") and low <= 0:
        errors.add(loc, f"{kind} needs low > 0 (a log scale)", args)
        return None
    return Distribution(kind, low, high)


def _check_param(spec, method: str, p: Param, loc: tuple, errors: _Errors, shared: bool) -> None:
    """Does `method` have the field, is the distribution of the field's type, and is every
    bound or choice a value the field accepts?"""
    if p.section == "student_train":
        if method != spec.methods[0] and shared:
            return  # student_train is the same for every method: checked once
        _check_train_field(spec, p, loc, errors)
        return
    from bench.distill.declare import method_to_dict, with_overrides

    resolved = spec.method(method)
    current, problem = _lookup(method_to_dict(resolved), p.field)
    if problem:
        hint = f" (search it under search.methods.{method}, or not at all)" if shared else ""
        errors.add(loc, f"method {method!r} has no field {p.field!r}: {problem}{hint}", p.dist.to_yaml())
        return
    if isinstance(current, (dict, list)):
        errors.add(loc, f"method {method!r}: {p.field!r} is a group of fields ({_keys(current)}); search "
                        f"one of them", p.dist.to_yaml())
        return
    if not _fits_type(current, p.dist):
        errors.add(loc, f"method {method!r}: {p.field!r} is {type(current).__name__} "
                        f"({current!r}); allowed: {_allowed_for(current)}", p.dist.to_yaml())
        return
    if p in teacher_pt_params(spec, method, (p,)) and not p.dist.discrete:
        errors.add(loc, f"method {method!r}: {p.field!r} sets a teacher pseudo-target set, which is "
                        f"generated before training: use choice or int", p.dist.to_yaml())
        return
    for value in p.dist.representatives():
        try:
            with_overrides(resolved, {p.field: value})
        except (ValueError, TypeError) as err:
            reason = str(err).rsplit(": ", 1)[-1]  # the method's own reason, without where it was built
            errors.add(loc, f"method {method!r} does not accept {p.field} = {value!r}: {reason}", p.dist.to_yaml())
            return


def _check_train_field(spec, p: Param, loc: tuple, errors: _Errors) -> None:
    from bench.spec import TrainSpec

    fields = TrainSpec.model_fields
    if p.field not in fields:
        errors.add(loc, f"student_train has no field {p.field!r}; allowed: "
                        f"{', '.join(f for f in fields if f not in FIXED_TRAIN_FIELDS)}", p.dist.to_yaml())
        return
    if p.field in FIXED_TRAIN_FIELDS:
        errors.add(loc, f"student_train.{p.field} is fixed for a search: {FIXED_TRAIN_FIELDS[p.field]}",
                   p.dist.to_yaml())
        return
    annotation = fields[p.field].annotation
    if typing.get_origin(annotation) is Literal:
        kind = "one of " + ", ".join(map(repr, typing.get_args(annotation)))
        ok = p.dist.kind == "choice"
    elif annotation is int:
        kind, ok = "an integer: int, logint or choice of integers", p.dist.kind in ("int", "logint") or (
            p.dist.kind == "choice" and all(isinstance(v, int) and not isinstance(v, bool) for v in p.dist.values))
    else:
        kind, ok = "a number: uniform, loguniform, int, logint or choice of numbers", p.dist.numeric
    if not ok:
        errors.add(loc, f"student_train.{p.field} is {kind}; got {p.dist.describe()}", p.dist.to_yaml())
        return
    base = spec.student_train.model_dump()
    for value in p.dist.representatives():
        try:
            TrainSpec(**{**base, p.field: value})
        except ValidationError as err:
            msg = "; ".join(e["msg"] for e in err.errors())
            errors.add(loc, f"student_train.{p.field} = {value!r} is not allowed: {msg}", p.dist.to_yaml())
            return


def _with_steps(spec, search: SearchSpec) -> SearchSpec:
    """The longest training any trial can have (ASHA's horizon), from `student_train.steps` or
    its distribution."""
    import dataclasses

    steps = [spec.student_train.steps]
    for m in spec.methods:
        for p in search.space(m):
            if p.path == "student_train.steps":
                steps.append(max(p.dist.representatives()))
    sizes = {}
    if search.algorithm == "grid":
        for m in spec.methods:
            sizes[m] = distinct_points(search.space(m)) or 0
    return dataclasses.replace(search, max_steps=int(max(steps)), grid_size=sizes)


def _check_budgets(spec, search: SearchSpec, errors: _Errors) -> None:
    """Equal budgets must be possible, and the scheduler must be able to stop something."""
    empty = [m for m in spec.methods if not search.space(m)]
    if empty:
        errors.add(("methods",), f"nothing is searched for {', '.join(map(repr, empty))}: every method gets the "
                                 f"same budget, so give each one parameters (search.space for all, or "
                                 f"search.methods.<method>) or leave it out of the spec", None)
        return
    if search.algorithm == "grid":
        for m in spec.methods:
            for p in search.space(m):
                if not p.dist.discrete:
                    where = ("methods", m, p.path) if p in search.per_method.get(m, ()) else ("space", p.path)
                    errors.add(where, f"grid search needs discrete values (choice, int, logint); {p.path} is "
                                      f"{p.dist.describe()}", p.dist.to_yaml())
                    return
        sizes = search.grid_size
        if any(n > MAX_GRID_POINTS for n in sizes.values()):
            errors.add(("space",), f"a grid of more than {MAX_GRID_POINTS:,} points "
                                   f"({', '.join(f'{m}: {n:,}' for m, n in sizes.items())}); use random search",
                       None)
            return
        if search.samples is None and len(set(sizes.values())) > 1:
            errors.add(("samples",), f"the grids differ in size across methods ({', '.join(f'{m}: {n}' for m, n in sizes.items())}): "
                                     f"budgets would differ; set search.samples to at most {min(sizes.values())} "
                                     f"(the same seeded subset of each grid)", None)
        elif search.samples is not None and search.samples > min(sizes.values()):
            small = [f"{m}: {n}" for m, n in sizes.items() if n < search.samples]
            errors.add(("samples",), f"samples = {search.samples} is more than some grids have ({', '.join(small)}): "
                                     f"budgets would differ; allowed: at most {min(sizes.values())}", search.samples)
    elif search.samples is not None:
        for m in spec.methods:
            n = distinct_points(search.space(m))
            if n is not None and n < search.samples:
                errors.add(("samples",), f"method {m!r} has only {n} distinct configurations but samples = "
                                         f"{search.samples}: use algorithm grid, or samples <= {n}", search.samples)
                return
    if search.scheduler.kind == "asha":
        grace = search.grace_period(spec.student_train.dev_every)
        if grace >= search.max_steps:
            errors.add(("scheduler", "grace_period"), f"ASHA's first rung (grace_period = {grace} steps) is not "
                                                      f"before the end of training ({search.max_steps} steps): "
                                                      f"it could never stop a trial; lower grace_period or "
                                                      f"student_train.dev_every", grace)


# ---------------------------------------------------------------------------- small helpers


def _lookup(data: Any, path: str) -> tuple[Any, str | None]:
    node = data
    for part in path.split("."):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return None, f"{part!r} is not an index of a list of {len(node)}"
            node = node[int(part)]
        elif isinstance(node, dict):
            if part not in node:
                return None, f"no key {part!r} (has: {_keys(node)})"
            node = node[part]
        else:
            return None, f"{part!r} is below a plain value"
    return node, None


def _keys(node: Any) -> str:
    if isinstance(node, list):
        return f"indices 0..{len(node) - 1}"
    return ", ".join(k for k in node if k not in ("name", "description"))


def _fits_type(current: Any, dist: Distribution) -> bool:
    if current is None:
        return True  # an unset optional field (e.g. a divergence's beta): the method validates the value
    if isinstance(current, bool) or isinstance(current, str):
        return dist.kind == "choice" and all(type(v) is type(current) for v in dist.values)
    if isinstance(current, int):
        return dist.kind in ("int", "logint") or (dist.kind == "choice" and all(
            isinstance(v, int) and not isinstance(v, bool) for v in dist.values))
    return dist.numeric


def _allowed_for(current: Any) -> str:
    if isinstance(current, (bool, str)):
        return f"choice of {type(current).__name__} values"
    if isinstance(current, int):
        return "int, logint or choice of integers"
    return "uniform, loguniform, int, logint or choice of numbers"


def _number(v: Any) -> float | int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
