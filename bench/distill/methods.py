"""KD methods as compositions: where the targets come from × which losses train on them.

A data source says which inputs it draws (labeled and/or unlabeled) and who writes their
targets: the gold references, the teacher's stored pseudo-targets (PTs), or the current
student, generating on the fly. Its weight is its share of each batch. A method is a named
preset of sources and weighted loss terms; adding one is one entry in `METHODS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bench.distill.losses import DIVERGENCES, CrossEntropy, build_divergence
from bench.distill.relations import RelationKD
from bench.distill.schedule import AdaptiveSGO, Replay, StaticMix

TargetOrigin = Literal["gold", "teacher_pt", "student_pt"]
InputSplit = Literal["labeled", "unlabeled"]


@dataclass(frozen=True)
class PTSpec:
    """How the teacher writes its K pseudo-targets per input (generated once, shared).

    `beam`: the top-K hypotheses of one beam search (beam width ≥ K); `sample`: K independent
    samples at `temperature`, optionally truncated to `top_k` tokens / `top_p` mass. Training
    uses PT number (epoch mod K) of each input, so K PTs are all visited over K epochs.
    """

    strategy: Literal["beam", "sample"] = "beam"
    k: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self):
        if self.k < 1 or self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"invalid pseudo-target spec {self}: need k >= 1, temperature > 0, "
                             f"0 < top_p <= 1, top_k >= 0")

    def generate_kwargs(self, num_beams: int = 1) -> dict:
        """Arguments of `bench.generation.generate_ids` that decode this way (`num_beams`:
        the beam width to use for `beam`, at least k)."""
        if self.strategy == "sample":
            return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
        return {"num_beams": max(num_beams, self.k)}

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
        if self.origin == "gold" and self.inputs != ("labeled",):
            raise ValueError("gold targets exist only for the labeled split")
        if self.origin == "student_pt" and self.pts.k != 1:
            raise ValueError(f"a student writes one pseudo-target per input and step; got k={self.pts.k}")
        if self.replay is not None and self.origin != "student_pt":
            raise ValueError("a replay buffer holds student outputs: only student_pt sources take one")


RELATION_KINDS = {"att_rel": ("q", "k", "v"), "hidden_rel": ("hidden",)}


@dataclass(frozen=True)
class LossTerm:
    """A weighted loss term.

    kind: `ce` (cross-entropy on the batch's targets); a word-level divergence between teacher
    and student next-token distributions — `word_kl` (= `forward_kl`, the paper's), `reverse_kl`,
    `jsd` (generalized JSD, `beta`; `gkd_jsd`: GKD's unnormalised values), `tv`,
    `skew_kl` / `skew_reverse_kl` (`alpha`) — at
    temperature τ with τ² scaling and optional teacher truncation (`teacher_top_k`/`_top_p`);
    or a relation term over the last encoder layer: `att_rel` (Q/K/V) or `hidden_rel`.
    """

    kind: str
    weight: float = 1.0
    temperature: float = 1.0
    beta: float | None = None
    alpha: float | None = None
    teacher_top_k: int | None = None
    teacher_top_p: float | None = None
    relation_heads: int = 4

    def __post_init__(self):
        allowed = ["ce", "word_kl", *DIVERGENCES, *RELATION_KINDS]
        if self.kind not in allowed:
            raise ValueError(f"unknown loss kind {self.kind!r}; allowed: {', '.join(allowed)}")
        self.build()  # out-of-range or misplaced parameters fail at declaration, not in a trial

    def build(self, label_smoothing: float = 0.0):
        if self.kind == "ce":
            return CrossEntropy(label_smoothing)
        if self.kind in RELATION_KINDS:
            return RelationKD(RELATION_KINDS[self.kind], self.relation_heads)
        extras = {k: v for k, v in (("beta", self.beta), ("alpha", self.alpha),
                                    ("teacher_top_k", self.teacher_top_k),
                                    ("teacher_top_p", self.teacher_top_p)) if v is not None}
        name = "forward_kl" if self.kind == "word_kl" else self.kind
        return build_divergence(name, temperature=self.temperature, **extras)

    @property
    def needs_teacher(self) -> bool:
        return self.kind != "ce"


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    sources: tuple[Source, ...]
    losses: tuple[LossTerm, ...]
    noisy_teacher: bool = False  # teacher logits computed with dropout active
    auto_scale: bool = False  # divide each loss term by its first-step value, so each starts near its weight
    schedule: StaticMix | AdaptiveSGO = field(default_factory=StaticMix)  # how sources share each batch

    def __post_init__(self):
        self.schedule.planner(self.sources, seed=0)  # refuses source sets the schedule cannot plan

    @property
    def needs_teacher_model(self) -> bool:
        """Whether the teacher must be loaded during training (for its logits)."""
        return any(term.needs_teacher for term in self.losses)

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
            "Word-level (logits) KD on the labeled split (Kim & Rush 2016): the student "
            "matches the teacher's next-token distribution along gold prefixes.",
            (Source("gold"),),
            (LossTerm("word_kl"),),
        ),
        Method(
            "noisy_kd",
            "Noisy-teacher word-level KD on the labeled split (Calderon et al. 2023, after "
            "Noisy Student, Xie et al. 2020): the teacher's logits come from a forward pass "
            "with dropout active, a different noise at every step.",
            (Source("gold"),),
            (LossTerm("word_kl"),),
            noisy_teacher=True,
        ),
        Method(
            "att_kd",
            "Attention-relation KD (MiniLM/MiniLMv2, Wang et al. 2020/2021; the paper's "
            "attention-relation baseline): cross-entropy on gold targets plus KL between "
            "teacher and student Q/K/V self-relations of the last encoder layer.",
            (Source("gold"),),
            (LossTerm("ce"), LossTerm("att_rel")),
            auto_scale=True,
        ),
        Method(
            "hidden_kd",
            "Hidden-state relation KD: cross-entropy on gold targets plus KL between teacher "
            "and student self-relations of the last encoder layer's hidden states.",
            (Source("gold"),),
            (LossTerm("ce"), LossTerm("hidden_rel")),
            auto_scale=True,
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
            "seq_kd_multi",
            "Sequence-level KD on K=4 beam PTs per input (Calderon et al. 2023: several PTs "
            "beat one); epoch e trains on PT e mod K.",
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
            "Word-level KD along teacher PTs for labeled and unlabeled inputs (Calderon et al. "
            "2023): logits KD where the prefixes come from the teacher's own outputs.",
            (Source("teacher_pt", BOTH),),
            (LossTerm("word_kl"),),
        ),
        Method(
            "student_pts",
            "Word-level KD along PTs written only by the current student (on the fly, no "
            "gradient), for labeled and unlabeled inputs: the Joint-Teaching ablation without "
            "teacher PTs (Calderon et al. 2023).",
            (Source("student_pt", BOTH),),
            (LossTerm("word_kl"),),
        ),
        Method(
            "gkd",
            "Generalized KD (Agarwal et al. 2024, GKD): GKD's generalized JSD (β=0.5) between "
            "teacher and student token distributions on a mix of fixed sequences (teacher PTs) and "
            "on-policy student samples (temperature 1) with on-policy fraction λ=0.5 (student "
            "outputs join after 40% of training, as our students start from scratch).",
            (Source("teacher_pt", BOTH, 0.5),
             Source("student_pt", BOTH, 0.5, start=0.4, pts=PTSpec("sample", k=1))),
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
            "Joint-Teaching (Calderon et al. 2023): word-level KD on PTs written half by the "
            "teacher and half by the current student (generated on the fly), for labeled and "
            "unlabeled inputs; the student-PT half fights exposure bias. Students start from "
            "scratch here, so student PTs join after the first 40% of training.",
            (Source("teacher_pt", BOTH, 0.5), Source("student_pt", BOTH, 0.5, start=0.4)),
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
