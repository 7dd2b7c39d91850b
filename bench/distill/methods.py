"""KD methods as compositions: where the targets come from × which losses train on them.

A data source says which inputs it draws (labeled and/or unlabeled) and who writes their
targets: the gold references, the teacher's stored pseudo-targets (PTs), or the current
student, generating on the fly. Its weight is its share of each batch. A method is a named
preset of sources and weighted loss terms; adding one is one entry in `METHODS`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

from bench.distill.losses import DIVERGENCES, CrossEntropy, build_divergence
from bench.distill.relations import ATTENTION_SITES, HIDDEN_SITES, LEGACY, RelationKD
from bench.distill.schedule import AdaptiveSGO, Alternate, Replay, StaticMix

TargetOrigin = Literal["gold", "teacher_pt", "student_pt"]
InputSplit = Literal["labeled", "unlabeled"]
PT_STRATEGIES = ("beam", "sample")


# ---------------------------------------------------------------------------- validation helpers
# (used by the dataclasses' __post_init__: a method is checked when declared, not in a trial)

class FieldError(ValueError):
    """A field of a method's building block that cannot be: `field` names it, `value` is what was
    given and `problem` says what is allowed (bench.distill.declare prefixes the spec path)."""

    def __init__(self, field: str, value, problem: str):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:79] + "…"
        super().__init__(f"{field} = {shown}: {problem}")
        self.field, self.value, self.problem = field, value, problem


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(name: str, v, ok, allowed: str, optional: bool = False) -> None:
    """FieldError unless `v` is a finite int/float (not a boolean) with `ok(v)` (or None if `optional`)."""
    if optional and v is None:
        return
    if not _is_number(v) or not ok(v):
        raise FieldError(name, v, f"must be {allowed}")


def _integer(name: str, v, ok, allowed: str, optional: bool = False) -> None:
    if optional and v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or not ok(v):
        raise FieldError(name, v, f"must be {allowed}")


def _choice(name: str, v, allowed: tuple[str, ...]) -> None:
    if not isinstance(v, str) or v not in allowed:
        raise FieldError(name, v, f"not allowed; allowed: {', '.join(allowed)}")


@dataclass(frozen=True)
class PTSpec:
    """How the teacher writes its K pseudo-targets per input (generated once, shared).

    `beam`: the top-K hypotheses of one beam search (beam width ≥ K); `sample`: K independent
    samples at `temperature`, optionally truncated to `top_k` tokens / `top_p` mass. Training
    takes an input's PTs in turn, one per visit of the input (visit v uses PT v mod K), so all
    K are used once an input has been visited K times.
    """

    strategy: Literal["beam", "sample"] = "beam"
    k: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self):
        _choice("strategy", self.strategy, PT_STRATEGIES)
        _integer("k", self.k, lambda v: v >= 1, "an integer >= 1")
        _number("temperature", self.temperature, lambda v: v > 0, "a finite number > 0")
        _number("top_p", self.top_p, lambda v: 0 < v <= 1, "a number in (0, 1]")
        _integer("top_k", self.top_k, lambda v: v >= 0, "an integer >= 0 (0: no top-k truncation)")
        if self.strategy == "beam":  # beam search would ignore them: refuse rather than drop silently
            for name, default in (("temperature", 1.0), ("top_p", 1.0), ("top_k", 0)):
                if getattr(self, name) != default:
                    raise FieldError(name, getattr(self, name), f"applies to strategy 'sample' only (beam search "
                                     f"ignores it); leave it at {default} or use strategy: sample")

    def generate_kwargs(self, num_beams: int = 1) -> dict:
        """Arguments of `bench.generation.generate_ids` that decode this way (`num_beams`:
        the beam width to use for `beam`, at least k)."""
        if self.strategy == "sample":
            return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
        return {"num_beams": max(num_beams, self.k)}

    @property
    def label(self) -> str:
        """Key of this PT set's artifact in a task's artifact paths (e.g. `pseudo_targets/beam-k1`)."""
        return f"pseudo_targets/{self.slug}"

    @property
    def slug(self) -> str:
        """A readable, unique name (used as the artifact label)."""
        if self.strategy == "beam":
            return f"beam-k{self.k}"
        return f"sample-k{self.k}-t{self.temperature:g}-p{self.top_p:g}-top{self.top_k}"


@dataclass(frozen=True)
class Source:
    """Where a share of each batch comes from.

    `start` is the fraction of training before which the source is off (its share goes to
    the others): a student trained from scratch writes noise at first, so its PTs only join
    once it has learned from the teacher's (a schedule, not a fallback — the student PTs
    are always used for the rest of training).

    `pts` says how the pseudo-targets are written: for `teacher_pt`, which stored set (K beam
    hypotheses or K samples) to train on; for `student_pt`, how the current student decodes
    (greedy by default, or one sample). `replay` keeps a buffer of the student's outputs
    for reuse (student_pt only; see `bench.distill.schedule`).
    """

    origin: TargetOrigin
    inputs: tuple[InputSplit, ...] = ("labeled",)
    weight: float = 1.0
    start: float = 0.0
    pts: PTSpec = PTSpec()
    replay: Replay | None = None

    def active(self, step: int, total_steps: int) -> bool:
        return step >= self.start * total_steps

    def __post_init__(self):
        _choice("origin", self.origin, get_args(TargetOrigin))
        splits = get_args(InputSplit)
        if not isinstance(self.inputs, tuple) or not self.inputs:
            raise FieldError("inputs", self.inputs, f"must be a non-empty list of: {', '.join(splits)}")
        bad = [x for x in self.inputs if not isinstance(x, str) or x not in splits]
        if bad:
            raise FieldError("inputs", list(self.inputs), f"{bad[0]!r} is not an input split; allowed: "
                                                          f"{', '.join(splits)}")
        if len(set(self.inputs)) != len(self.inputs):
            raise FieldError("inputs", list(self.inputs), "each split may appear once")
        _number("weight", self.weight, lambda v: v >= 0, "a finite number >= 0 (the source's share of each batch)")
        _number("start", self.start, lambda v: 0 <= v < 1, "a number in [0, 1) (the fraction of training before "
                                                           "the source joins)")
        if not isinstance(self.pts, PTSpec):
            raise FieldError("pts", self.pts, "must be a pseudo-target spec {strategy, k, temperature, top_p, top_k}")
        if self.replay is not None and not isinstance(self.replay, Replay):
            raise FieldError("replay", self.replay, "must be a replay buffer {capacity, share} or null")
        if self.origin == "gold" and self.inputs != ("labeled",):
            raise FieldError("inputs", list(self.inputs), "gold targets exist only for the labeled split: use "
                                                          "[labeled]")
        if self.origin == "student_pt" and self.pts.k != 1:
            raise ValueError(f"a student writes one pseudo-target per input and step; got k={self.pts.k}")
        if self.replay is not None and self.origin != "student_pt":
            raise ValueError("a replay buffer holds student outputs: only student_pt sources take one")


RELATION_KINDS = {"att_rel": ATTENTION_SITES, "hidden_rel": HIDDEN_SITES}
# The sites a relation term takes when it names none: the last encoder layer (MiniLM-style).
DEFAULT_SITES = {"att_rel": ("enc_self_q", "enc_self_k", "enc_self_v"), "hidden_rel": ("enc_hidden",)}


@dataclass(frozen=True)
class LossTerm:
    """A weighted loss term.

    kind: `ce` (cross-entropy on the batch's targets); a word-level divergence between teacher
    and student next-token distributions — `word_kl` (= `forward_kl`, the paper's), `reverse_kl`,
    `jsd` (generalized JSD, `beta`; `gkd_jsd`: GKD's unnormalised values), `tv`,
    `skew_kl` / `skew_reverse_kl` (`alpha`) — at
    temperature τ with τ² scaling and optional teacher truncation (`teacher_top_k`/`_top_p`);
    or a relation term over the last layers' activations (`bench.distill.relations`): `att_rel`
    over attention Q/K/V sites or `hidden_rel` over hidden-state sites (`sites`; default: the
    last encoder layer's). `relation_heads`: None = the teacher's head count (KD4Gen).
    """

    kind: str
    weight: float = 1.0
    temperature: float = 1.0
    beta: float | None = None
    alpha: float | None = None
    teacher_top_k: int | None = None
    teacher_top_p: float | None = None
    relation_heads: int | None = None
    sites: tuple[str, ...] | None = None

    def __post_init__(self):
        allowed = ("ce", "word_kl", *DIVERGENCES, *RELATION_KINDS)
        if not isinstance(self.kind, str) or self.kind not in allowed:
            raise FieldError("kind", self.kind, f"unknown loss kind; allowed: {', '.join(allowed)}")
        if not _is_number(self.weight) or not self.weight > 0:
            raise FieldError("weight", self.weight, "loss weight must be a finite number > 0")
        _number("temperature", self.temperature, lambda v: v > 0, "a finite number > 0")
        for name in ("beta", "alpha", "teacher_top_p"):
            _number(name, getattr(self, name), lambda v: True, "a finite number or null", optional=True)
        _integer("teacher_top_k", self.teacher_top_k, lambda v: v >= 1, "an integer >= 1 or null", optional=True)
        _integer("relation_heads", self.relation_heads, lambda v: v >= 1, "an integer >= 1 or null", optional=True)
        if self.sites is not None and (not isinstance(self.sites, tuple)
                                       or not all(isinstance(x, str) for x in self.sites)):
            raise FieldError("sites", self.sites, "must be a list of site names or null")
        if self.sites is not None:
            if self.kind not in RELATION_KINDS:
                raise ValueError(f"sites are for relation terms (att_rel, hidden_rel), not {self.kind!r}")
            allowed_sites = RELATION_KINDS[self.kind]
            bad = [s for s in self.sites if LEGACY.get(s, s) not in allowed_sites]
            if bad or not self.sites:
                raise ValueError(f"{self.kind} sites {list(bad or self.sites)} are not allowed; allowed: "
                                 f"{', '.join(allowed_sites)}")
        self.build()  # out-of-range or misplaced parameters fail at declaration, not in a trial

    @property
    def relation_sites(self) -> tuple[str, ...]:
        return tuple(self.sites or DEFAULT_SITES[self.kind])

    def build(self, label_smoothing: float = 0.0, normalization: str = "token", teacher_heads: int = 4):
        if self.kind == "ce":
            return CrossEntropy(label_smoothing, normalization)
        if self.kind in RELATION_KINDS:
            return RelationKD(self.relation_sites, self.relation_heads or teacher_heads,
                              normalization=normalization)
        extras = {k: v for k, v in (("beta", self.beta), ("alpha", self.alpha),
                                    ("teacher_top_k", self.teacher_top_k),
                                    ("teacher_top_p", self.teacher_top_p)) if v is not None}
        name = "forward_kl" if self.kind == "word_kl" else self.kind
        return build_divergence(name, temperature=self.temperature, normalization=normalization, **extras)

    @property
    def needs_teacher(self) -> bool:
        return self.kind != "ce"

    @property
    def word_level(self) -> bool:
        """A divergence between next-token distributions (the teacher cache can serve it)."""
        return self.kind not in ("ce", *RELATION_KINDS)


def relation_terms(kind: str, sites: tuple[str, ...], weight: float) -> tuple[LossTerm, ...]:
    """One term per site sharing `weight` equally, so that auto-scaling scales each site on its
    own (KD4Gen: 0.5 · mean over the 9 attention sites of scale_k · relation_k)."""
    return tuple(LossTerm(kind, weight / len(sites), sites=(site,)) for site in sites)


@dataclass(frozen=True)
class AutoScale:
    """Loss-term auto-scaling as KD4Gen does it: before training, the mean of every term over
    the first `batches` batches (both models in eval mode, no update) gives its scale
    1 / max(mean, `floor`), fixed for the whole run — so each term starts near its weight and
    no scale exceeds 1 / floor."""

    batches: int = 100
    floor: float = 0.025

    def __post_init__(self):
        _integer("batches", self.batches, lambda v: v >= 1, "an integer >= 1")
        _number("floor", self.floor, lambda v: v > 0, "a finite number > 0")


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    sources: tuple[Source, ...]
    losses: tuple[LossTerm, ...]
    noisy_teacher: bool = False  # teacher logits computed with dropout active
    auto_scale: AutoScale | None = None  # scale each loss term to start near its weight (KD4Gen's recipe)
    schedule: StaticMix | AdaptiveSGO | Alternate = field(default_factory=StaticMix)  # how sources share each batch

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise FieldError("name", self.name, "must be a non-empty string")
        if not isinstance(self.description, str):
            raise FieldError("description", self.description, "must be a string")
        if not isinstance(self.sources, tuple) or not self.sources or \
                not all(isinstance(s, Source) for s in self.sources):
            raise FieldError("sources", self.sources, "must be a non-empty list of data sources")
        if not isinstance(self.schedule, (StaticMix, AdaptiveSGO, Alternate)):
            raise FieldError("schedule", self.schedule, "must be a schedule: static, adaptive_sgo or alternate")
        self.schedule.planner(self.sources, seed=0)  # refuses source sets the schedule cannot plan
        if not isinstance(self.losses, tuple) or not self.losses or \
                not all(isinstance(t, LossTerm) for t in self.losses):
            raise FieldError("losses", self.losses, "must be a non-empty list of loss terms")
        if not isinstance(self.noisy_teacher, bool):
            raise FieldError("noisy_teacher", self.noisy_teacher, "must be true or false")
        if self.auto_scale is not None and not isinstance(self.auto_scale, AutoScale):
            raise FieldError("auto_scale", self.auto_scale, "must be true, false or {batches, floor}")
        # every batch needs a source with a positive weight: under StaticMix all sources share it;
        # the other schedules fill a step from the fixed or from the student sources alone
        groups = [self.sources] if isinstance(self.schedule, StaticMix) else [
            [s for s in self.sources if s.origin != "student_pt"], [s for s in self.sources if s.origin == "student_pt"]]
        for group in groups:
            first = min(s.start for s in group)
            if not any(s.weight > 0 for s in group if s.start == first):
                raise ValueError(f"the sources that start first (at {first:g}) all have weight 0 "
                                 f"(weights: {[s.weight for s in self.sources]}), so their batches would be "
                                 f"empty: give one of them a weight > 0")

    @property
    def needs_teacher_model(self) -> bool:
        """Whether the teacher's distributions are needed during training (online or cached)."""
        return any(term.needs_teacher for term in self.losses)

    @property
    def cacheable(self) -> bool:
        """Whether the teacher cache can replace the online teacher on fixed targets: every term
        that needs the teacher is word-level (relations need activations), and the teacher is
        not noisy (its noise must differ at every step)."""
        needing = [t for t in self.losses if t.needs_teacher]
        return bool(needing) and not self.noisy_teacher and all(t.word_level for t in needing)

    @property
    def cache_temperatures(self) -> tuple[float, ...]:
        """The temperatures at which this method's word-level terms read teacher distributions."""
        return tuple(dict.fromkeys(t.temperature for t in self.losses if t.word_level))

    @property
    def cached_targets(self) -> tuple[str, ...]:
        """Target sets of the fixed sources whose teacher distributions can be cached: `gold`
        or a teacher-PT set's slug."""
        if not self.cacheable:
            return ()
        out = []
        for s in self.sources:
            if s.origin == "gold":
                out.append("gold")
            elif s.origin == "teacher_pt":
                out.append(s.pts.slug)
        return tuple(dict.fromkeys(out))

    @property
    def relative_cost(self) -> int:
        """Rough training cost, for scheduling the longest trials first: teacher logits add a
        forward pass, student PTs add generation at every step."""
        return 1 + self.needs_teacher_model + 2 * any(s.origin == "student_pt" for s in self.sources)

    @property
    def needs_teacher_pts(self) -> bool:
        return bool(self.pt_specs)

    @property
    def sequence_level_pts(self) -> PTSpec | None:
        """The PT set of a plain sequence-level KD method — only teacher-PT sources, all on one
        PT set, cross-entropy only — else None. Such methods differ only in their PTs, which is
        what the report's PT ablation compares."""
        sets = {s.pts for s in self.sources}
        plain = all(s.origin == "teacher_pt" for s in self.sources) and all(t.kind == "ce" for t in self.losses)
        return next(iter(sets)) if plain and len(sets) == 1 else None

    @property
    def pt_specs(self) -> tuple[PTSpec, ...]:
        """The teacher-PT sets this method trains on (each built once per task)."""
        return tuple(dict.fromkeys(s.pts for s in self.sources if s.origin == "teacher_pt"))


BOTH = ("labeled", "unlabeled")
# The paper's student sampling (KD4Gen: do_sample, temperature 1, top_p 0.95, and the top_k of 50
# that transformers 4.22 applied by default).
PAPER_SAMPLING = PTSpec("sample", k=1, temperature=1.0, top_p=0.95, top_k=50)
_JT_START = 0.4  # our students start from random weights: their samples are noise at first

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "ft",
            "Fine-tuning baseline: cross-entropy on the labeled split's gold targets.",
            (Source("gold"),),
            (LossTerm("ce"),),
        ),
        Method(
            "word_kd",
            "Word-level (logits) KD on the labeled split (Kim & Rush 2016; KD4Gen's logits_kd): "
            "KL(teacher ‖ student) of the next-token distributions along gold prefixes, τ = 1, no "
            "cross-entropy term.",
            (Source("gold"),),
            (LossTerm("word_kl"),),
        ),
        Method(
            "noisy_kd",
            "Noisy-teacher word-level KD on the labeled split (KD4Gen's noisy_kd, after Noisy "
            "Student, Xie et al. 2020): the teacher's logits come from a forward pass with its own "
            "dropout active, a different noise at every step.",
            (Source("gold"),),
            (LossTerm("word_kl"),),
            noisy_teacher=True,
        ),
        Method(
            "att_kd",
            "Attention-relation KD as KD4Gen's attention_kd: 0.5 × word-level KL + 0.5 × the mean "
            "of MiniLM-style Q/K/V self-relation KLs of the last layer's encoder self-attention, "
            "decoder self-attention (causal) and decoder cross-attention (9 terms), no "
            "cross-entropy; every term auto-scaled by its mean over the first 100 batches "
            "(scale 1/max(mean, 0.025)). Relation heads: the teacher's. Differs from KD4Gen in "
            "taking Q/K/V from the projection outputs (the same per-head states).",
            (Source("gold"),),
            (LossTerm("word_kl", 0.5), *relation_terms("att_rel", ATTENTION_SITES, 0.5)),
            auto_scale=AutoScale(),
        ),
        Method(
            "hidden_kd",
            "Hidden-state relation KD as KD4Gen's hidden_kd: 0.5 × word-level KL + 0.5 × the mean of "
            "the self-relation KLs of the last encoder and decoder hidden states (decoder causal; "
            "one relation head over the full width), no cross-entropy; auto-scaled as att_kd.",
            (Source("gold"),),
            (LossTerm("word_kl", 0.5), *relation_terms("hidden_rel", HIDDEN_SITES, 0.5)),
            auto_scale=AutoScale(),
        ),
        Method(
            "att_kd_encoder",
            "MiniLM-style attention-relation KD on the encoder only (kdbench's earlier att_kd): "
            "cross-entropy on gold targets plus the Q/K/V self-relation KL of the last encoder "
            "layer, both auto-scaled.",
            (Source("gold"),),
            (LossTerm("ce"), LossTerm("att_rel")),
            auto_scale=AutoScale(),
        ),
        Method(
            "seq_kd",
            "Sequence-level KD with pseudo-targets (Kim & Rush 2016; Calderon et al. 2023 "
            "realistic setup): cross-entropy on one teacher beam PT for every labeled and "
            "unlabeled input.",
            (Source("teacher_pt", BOTH),),
            (LossTerm("ce"),),
        ),
        Method(
            "seq_kd_labeled",
            "Sequence-level KD on teacher PTs for the labeled inputs only (the ablation of S5: "
            "are PTs for unlabeled inputs worth it?).",
            (Source("teacher_pt", ("labeled",)),),
            (LossTerm("ce"),),
        ),
        Method(
            "seq_kd_multi",
            "Sequence-level KD on K=4 beam PTs per input (Calderon et al. 2023: several PTs "
            "beat one); each visit of an input takes its next PT.",
            (Source("teacher_pt", BOTH, pts=PTSpec("beam", k=4)),),
            (LossTerm("ce"),),
        ),
        Method(
            "sampling_pts",
            "Sequence-level KD on K=8 PTs sampled from the teacher at temperature 1 (Calderon "
            "et al. 2023: sampled PTs add diversity that beam PTs lack).",
            (Source("teacher_pt", BOTH, pts=PTSpec("sample", k=8)),),
            (LossTerm("ce"),),
        ),
        Method(
            "word_kd_pts",
            "Word-level KD along one teacher beam PT per labeled and unlabeled input (Calderon et "
            "al. 2023): logits KD where the prefixes come from the teacher's outputs; "
            "Joint-Teaching without student PTs.",
            (Source("teacher_pt", BOTH),),
            (LossTerm("word_kl"),),
        ),
        Method(
            "student_pts",
            "Word-level KD along PTs sampled by the current student on every step (KD4Gen's "
            "logits_kd_student_gens: top-p 0.95, temperature 1; no gradient, dropout off) for "
            "labeled and unlabeled inputs: the Joint-Teaching ablation without teacher PTs.",
            (Source("student_pt", BOTH, pts=PAPER_SAMPLING),),
            (LossTerm("word_kl"),),
        ),
        Method(
            "gkd",
            "Generalized KD (Agarwal et al. 2024, GKD): GKD's generalized JSD (β=0.5) between "
            "teacher and student token distributions on a mix of fixed sequences (teacher PTs) and "
            "on-policy student samples (temperature 1) with on-policy fraction λ=0.5 (student "
            "outputs join after 40% of training, as our students start from scratch).",
            (Source("teacher_pt", BOTH, 0.5),
             Source("student_pt", BOTH, 0.5, start=_JT_START, pts=PTSpec("sample", k=1))),
            (LossTerm("gkd_jsd", beta=0.5),),
        ),
        Method(
            "distillm",
            "DistiLLM (Ko et al. 2024): skew KL (α=0.1) between teacher and student token "
            "distributions; each step trains either on fixed sequences (teacher PTs for labeled and "
            "unlabeled inputs) or on student-generated outputs (one sample each), chosen by the "
            "adaptive off-policy scheduler — the SGO probability starts at 0 and rises by 0.1 each "
            "time the dev loss grows by ≥ 0.1 — with a 1000-example replay buffer of student outputs.",
            (Source("teacher_pt", BOTH),
             Source("student_pt", BOTH, pts=PTSpec("sample", k=1), replay=Replay(capacity=1000))),
            (LossTerm("skew_kl", alpha=0.1),),
            schedule=AdaptiveSGO(),
        ),
        Method(
            "joint_teaching",
            "Joint-Teaching (Calderon et al. 2023) as KD4Gen's co-teaching recipe: word-level KL on "
            "PTs for labeled and unlabeled inputs, alternating by step between one teacher beam PT "
            "and one PT sampled by the current student (top-p 0.95, temperature 1, top-k 50; no "
            "gradient). Differs from the paper where our students start from random weights: "
            "student-PT steps begin after 40% of training (before that every step uses teacher PTs), "
            "and the student samples with dropout off.",
            (Source("teacher_pt", BOTH), Source("student_pt", BOTH, start=_JT_START, pts=PAPER_SAMPLING)),
            (LossTerm("word_kl"),),
            schedule=Alternate(),
        ),
        Method(
            "joint_teaching_mix",
            "Joint-Teaching with the two PT sources mixed in every batch (half teacher PTs, half "
            "student samples, top-p 0.95, temperature 1) instead of alternating steps; student PTs "
            "join after 40% of training.",
            (Source("teacher_pt", BOTH, 0.5), Source("student_pt", BOTH, 0.5, start=_JT_START,
                                                      pts=PAPER_SAMPLING)),
            (LossTerm("word_kl"),),
        ),
    )
}


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}")
    return METHODS[name]
