"""Abductive commonsense explanation, αNLG on the ART data (Bhagavatula et al., 2020): two
observations -> a plausible explanation of what happened in between.

Hub: `allenai/art`, config `anli` (columns observation_1, observation_2, hypothesis_1,
hypothesis_2, label ∈ {1, 2}; splits train/validation). The target is the hypothesis the label
marks as correct; the many plausible hypotheses written for one observation pair become its
references on dev/test and one labeled example each in train. With no test split, the
validation split is divided into dev and test.
"""
from dataclasses import dataclass
from typing import Any

from tasks.base import SplitSizes
from tasks.dataset import DatasetTask, LengthFilter, RowError, text
from tasks.sources import DataSource


@dataclass(frozen=True)
class CorrectHypothesis:
    """`observation 1: <o1> observation 2: <o2>` -> hypothesis_<label>."""

    def columns(self, split: str) -> tuple[str, ...]:
        return ("observation_1", "observation_2", "hypothesis_1", "hypothesis_2", "label")

    def __call__(self, row: dict[str, Any], split: str) -> tuple[str, list[str]]:
        label = row.get("label")
        if str(label) not in ("1", "2") or isinstance(label, bool):
            raise RowError(f"field 'label' must be 1 or 2 (which hypothesis is correct), got {label!r}")
        source = f"observation 1: {text(row, 'observation_1')} observation 2: {text(row, 'observation_2')}"
        return source, [text(row, f"hypothesis_{label}")]


TASK = DatasetTask(
    name="art",
    description="ART abductive explanation: two observations -> the correct hypothesis (allenai/art; ROUGE-L)",
    data=DataSource(path="allenai/art", config="anli"),
    reader=CorrectHypothesis(),
    metric="rougeL",
    prompt="explain: ",
    max_source_tokens=96,
    max_target_tokens=48,
    filters=LengthFilter(min_target_words=2),
    # ~17.8k distinct observation pairs in train: a fixed labeled split, all the rest unlabeled.
    default_sizes=SplitSizes(labeled=5_000, unlabeled=None, dev=500, test=None, teacher_pool=0,
                             references=None),
)
