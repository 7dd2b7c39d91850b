"""Answer-aware question generation on SQuAD v1.1 (Rajpurkar et al., 2016): a passage and an
answer span -> the question.

Hub: `rajpurkar/squad`, config `plain_text` (columns id, title, context, question,
answers{text, answer_start}; splits train/validation). SQuAD has no public test split, so, as in
the paper's code, the original validation split is divided into dev and test. Questions that
share a (passage, answer) become several references of one dev/test input, and several labeled
(input, question) examples in train.
"""
from dataclasses import dataclass
from typing import Any

from tasks.base import SplitSizes
from tasks.dataset import DatasetTask, LengthFilter, RowError, text
from tasks.sources import DataSource


@dataclass(frozen=True)
class AnswerAwareQuestion:
    """`answer: <first answer text> context: <passage>` -> question."""

    def columns(self, split: str) -> tuple[str, ...]:
        return ("context", "question", "answers")

    def __call__(self, row: dict[str, Any], split: str) -> tuple[str, list[str]]:
        answers = row.get("answers")
        texts = answers.get("text") if isinstance(answers, dict) else None
        if not isinstance(texts, (list, tuple)) or not texts:
            raise RowError(f"field 'answers' must be {{text: [...], answer_start: [...]}} with at least one answer, "
                           f"got {answers!r:.80}")
        answer = text({"answers.text[0]": texts[0]}, "answers.text[0]")
        return f"answer: {answer} context: {text(row, 'context')}", [text(row, "question")]


TASK = DatasetTask(
    name="squad_qg",
    description="SQuAD question generation: passage + answer -> question (rajpurkar/squad; ROUGE-L)",
    data=DataSource(path="rajpurkar/squad", config="plain_text"),
    reader=AnswerAwareQuestion(),
    metric="rougeL",
    prompt="generate question: ",
    max_source_tokens=512,
    max_target_tokens=48,
    filters=LengthFilter(max_source_words=400, min_target_words=3),
    # dev as in the paper's code (1,570 of the 10,570 validation questions), test = the rest.
    default_sizes=SplitSizes(labeled=10_000, unlabeled=40_000, dev=1_570, test=None, teacher_pool=0,
                             references=None),
)
