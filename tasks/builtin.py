"""A built-in task: a seeded grammar plus its lengths and metric. No download, ever."""
from __future__ import annotations

from dataclasses import dataclass

from tasks.base import Generator, SplitSizes, TaskSplits, generate_splits


@dataclass(frozen=True)
class BuiltinTask:
    name: str
    description: str
    generator: Generator
    max_source_tokens: int  # tokenizer-level limits used for truncation and generation
    max_target_tokens: int
    metric: str = "bleu"  # the headline metric of the report

    @property
    def version(self) -> str:
        return self.generator.version

    def build(self, sizes: SplitSizes, seed: int) -> TaskSplits:
        return generate_splits(self.generator, sizes, seed)
