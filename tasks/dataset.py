"""Dataset tasks: real data (a Hub dataset or local files) cut into the paper's realistic splits.

A `DatasetTask` is declarative: where the data lives (`DataSource`), how one row becomes an
input and its reference(s) (a `Reader`), length filters, a prompt, lengths and a metric. Its
`build` reads the rows, validates them (missing fields, empty or non-text values fail with the
split, file and row), drops rows outside the length filters, merges rows that share an input
(their targets become several references) and cuts the splits (`realistic_splits`):

- dev and test come from the dataset's own validation and test splits; with only one of them it
  is divided into dev and test; with neither they are carved out of train;
- labeled = a fixed number of train inputs with their target; unlabeled = the rest of train,
  inputs only (all of them, or a fixed number). The teacher trains on the labeled split: real
  tasks have no teacher-only pool.

Every split is disjoint from every other by input text, and the draw is seeded per pool, so
growing the training splits never changes dev or test.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar, Protocol

from tasks.base import METRICS, SettingError, SplitSizes, TaskDataError, TaskSplits
from tasks.sources import DataSource, load_rows


class RowError(ValueError):
    """One row cannot be read; the task adds split, file and row number."""


class EmptyText(RowError):
    """A text field is empty (after stripping whitespace)."""


class Reader(Protocol):
    """How one row of the dataset becomes (input, references); the first reference is the target."""

    def columns(self, split: str) -> tuple[str, ...]: ...

    def __call__(self, row: dict[str, Any], split: str) -> tuple[str, list[str]]: ...


def text(row: dict[str, Any], column: str) -> str:
    """The stripped text in `column`; RowError for a non-text value, EmptyText for an empty one."""
    value = row.get(column)
    if value is None:
        raise EmptyText(f"field {column!r} is missing (null)")
    if not isinstance(value, str):
        raise RowError(f"field {column!r} must be text, got {type(value).__name__} {value!r:.60}")
    if not value.strip():
        raise EmptyText(f"field {column!r} is empty")
    return value.strip()


@dataclass(frozen=True)
class Fields:
    """Input, target and (optionally, on dev/test rows) a list of references, each read from a
    named column as-is."""

    source: str
    target: str
    references: str | None = None

    def columns(self, split: str) -> tuple[str, ...]:
        if split != "train" and self.references:
            return tuple(dict.fromkeys((self.source, self.references)))
        return tuple(dict.fromkeys((self.source, self.target)))

    def __call__(self, row: dict[str, Any], split: str) -> tuple[str, list[str]]:
        source = text(row, self.source)
        if split == "train" or not self.references:
            return source, [text(row, self.target)]
        refs = row.get(self.references)
        if not isinstance(refs, (list, tuple)) or not refs:
            raise RowError(f"field {self.references!r} must be a non-empty list of texts, got {refs!r:.60}")
        return source, [text({"reference": r}, "reference") for r in refs]


@dataclass(frozen=True)
class LengthFilter:
    """Keep only examples whose input and target word counts lie within these bounds (None: no
    bound). Words are whitespace-separated; the target is the first reference."""

    min_source_words: int | None = None
    max_source_words: int | None = None
    min_target_words: int | None = None
    max_target_words: int | None = None

    def __post_init__(self) -> None:
        for side in ("source", "target"):
            lo, hi = getattr(self, f"min_{side}_words"), getattr(self, f"max_{side}_words")
            if lo is not None and hi is not None and lo > hi:
                raise SettingError(f"min_{side}_words", f"min_{side}_words={lo} is larger than "
                                                         f"max_{side}_words={hi}")

    def keeps(self, source: str, target: str) -> bool:
        for n, lo, hi in ((len(source.split()), self.min_source_words, self.max_source_words),
                          (len(target.split()), self.min_target_words, self.max_target_words)):
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                return False
        return True


@dataclass(frozen=True)
class DatasetTask:
    name: str
    description: str
    data: DataSource | None  # None: no default copy; the spec must give `data`
    reader: Reader
    metric: str
    max_source_tokens: int
    max_target_tokens: int
    default_sizes: SplitSizes
    prompt: str = ""
    bleu_tokenize: str = "13a"  # sacreBLEU's tokenizer for BLEU (`none` for pre-tokenized corpora)
    filters: LengthFilter = LengthFilter()
    skip_empty: bool = False  # drop (and count) rows with an empty field instead of failing
    definition_version: str = "1"  # bump when the reader or the recipe changes
    missing_data_hint: str = ""  # why there is no default data source and what to give instead
    uses_teacher_pool: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise SettingError("metric", f"metric {self.metric!r} is not supported; allowed: {', '.join(METRICS)}")

    @property
    def version(self) -> str:
        return f"{self.name}-{self.definition_version}"

    def source(self) -> DataSource:
        if self.data is None:
            raise TaskDataError(f"task {self.name!r} has no default data source; give one in the spec: "
                                f"tasks: [{{name: {self.name}, data: {{path: ...}}}}]. {self.missing_data_hint}")
        return self.data

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "dataset", "version": self.version, "data": self.source().fingerprint(),
                "reader": {"type": type(self.reader).__name__, **asdict(self.reader)},
                "prompt": self.prompt, "filters": asdict(self.filters), "skip_empty": self.skip_empty,
                "metric": self.metric, "bleu_tokenize": self.bleu_tokenize, "max_source_tokens": self.max_source_tokens,
                "max_target_tokens": self.max_target_tokens}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "version": self.version,
                "data": self.source().describe(), "reader": {"type": type(self.reader).__name__,
                                                             **asdict(self.reader)},
                "prompt": self.prompt, "filters": asdict(self.filters), "metric": self.metric,
                "max_source_tokens": self.max_source_tokens, "max_target_tokens": self.max_target_tokens}

    def configured(self, *, data: dict | None = None, filters: dict | None = None, prompt: str | None = None,
                   max_source_tokens: int | None = None, max_target_tokens: int | None = None,
                   bleu_tokenize: str | None = None) -> DatasetTask:
        try:
            source = DataSource.from_dict(data) if data is not None else self.data
        except SettingError as err:
            raise SettingError(f"data.{err.field}", str(err)) from None
        try:
            length_filter = LengthFilter(**filters) if filters is not None else self.filters
        except SettingError as err:
            raise SettingError(f"filters.{err.field}", str(err)) from None
        return replace(
            self,
            data=source,
            filters=length_filter,
            prompt=self.prompt if prompt is None else prompt,
            max_source_tokens=max_source_tokens or self.max_source_tokens,
            max_target_tokens=max_target_tokens or self.max_target_tokens,
            bleu_tokenize=bleu_tokenize or self.bleu_tokenize,
        )

    def check_runnable(self, sizes: SplitSizes) -> None:
        if self.data is None:
            raise SettingError("data", f"task {self.name!r} has no default data source; give one: "
                                       f"data: {{path: ...}} or data: {{files: {{train: ..., validation: ..., "
                                       f"test: ...}}}}. {self.missing_data_hint}")
        if sizes.teacher_pool:
            raise SettingError("sizes.teacher_pool", f"task {self.name!r} reads a dataset and its teacher trains on the "
                                                     f"labeled split, so teacher_pool must be 0 (a teacher-only pool "
                                                     f"exists for built-in tasks only)")

    def build(self, sizes: SplitSizes, seed: int) -> TaskSplits:
        self.check_runnable(sizes)
        source = self.source()
        raw = load_rows(source, self.reader.columns, self.name)
        pools: dict[str, dict[str, list[str]]] = {}
        stats: dict[str, Any] = {"data": source.describe(), "rows": {}, "dropped_empty": {},
                                 "dropped_by_filters": {}, "merged_duplicate_inputs": {}}
        for split, rows in raw.rows.items():
            pools[split] = self._pool(split, rows, raw.origin[split], stats)
        splits, cut = realistic_splits(self.name, pools, sizes, seed)
        stats.update(cut)
        rows = {name: [{**r, "source": self.prompt + r["source"]} for r in split_rows]
                for name, split_rows in splits.items()}
        return TaskSplits(rows, {"sizes": asdict(sizes), **stats})

    def _pool(self, split: str, rows: list[dict[str, Any]], where: str, stats: dict) -> dict[str, list[str]]:
        """Validated, filtered rows of one original split, grouped by input: {input: [references]}."""
        if not rows:
            raise TaskDataError(f"task {self.name!r}: split {split!r} ({where}) is empty (no rows)")
        pool: dict[str, list[str]] = {}
        empty = filtered = 0
        for i, row in enumerate(rows):
            try:
                source, refs = self.reader(row, split)
            except EmptyText as err:
                if self.skip_empty:
                    empty += 1
                    continue
                raise TaskDataError(f"task {self.name!r}: split {split!r} ({where}), row {i}: {err}") from None
            except RowError as err:
                raise TaskDataError(f"task {self.name!r}: split {split!r} ({where}), row {i}: {err}") from None
            if not self.filters.keeps(source, refs[0]):
                filtered += 1
                continue
            known = pool.setdefault(source, [])
            known.extend(r for r in refs if r not in known)
        stats["rows"][split] = len(rows)
        stats["dropped_empty"][split] = empty
        stats["dropped_by_filters"][split] = filtered
        stats["merged_duplicate_inputs"][split] = len(rows) - empty - filtered - len(pool)
        if not pool:
            raise TaskDataError(f"task {self.name!r}: no row of split {split!r} ({where}) is left after the length "
                                f"filters {asdict(self.filters)} ({filtered} of {len(rows)} dropped); relax "
                                f"tasks[].filters")
        return pool


Pool = dict[str, list[str]]


def realistic_splits(task: str, pools: dict[str, Pool], sizes: SplitSizes,
                     seed: int) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Cut labeled / unlabeled / dev / test (and an empty teacher_pool) from the original
    splits `pools` ({split: {input: references}}); see the module docstring for the recipe."""

    def shuffled(split: str) -> list[tuple[str, list[str]]]:
        items = list(pools[split].items())
        random.Random(f"{task}|{seed}|{split}").shuffle(items)
        return items

    def take(items: list, n: int | None, what: str, where: str, hint: str) -> tuple[list, list]:
        if n is None:
            return items, []
        if n > len(items):
            raise TaskDataError(f"task {task!r}: sizes.{what} = {n} but {where} has only {len(items)} distinct "
                                f"inputs (after length filters and merging repeated inputs); {hint}")
        return items[:n], items[n:]

    lower = "lower tasks[].sizes.{0} in the spec"
    train = shuffled("train")
    eval_splits = [s for s in ("validation", "test") if s in pools]
    if eval_splits == ["validation", "test"]:
        dev, _ = take(shuffled("validation"), sizes.dev, "dev", "the validation split", lower.format("dev"))
        in_dev = {s for s, _ in dev}  # an input repeated across the original splits stays in dev only
        test, _ = take([it for it in shuffled("test") if it[0] not in in_dev], sizes.test, "test",
                       "the test split", lower.format("test"))
        recipe = "dev from validation, test from test"
    elif eval_splits:
        pool = eval_splits[0]
        dev, rest = take(shuffled(pool), sizes.dev, "dev", f"the {pool} split", lower.format("dev"))
        test, _ = take(rest, sizes.test, "test", f"the {pool} split after dev",
                       "lower tasks[].sizes.dev or sizes.test in the spec")
        recipe = f"{pool} divided into dev and test"
    else:
        if sizes.test is None:
            raise TaskDataError(f"task {task!r}: sizes.test = null (all that remain) needs a validation or test "
                                f"split; this data has only train, so give sizes.test a number")
        test, train = take(train, sizes.test, "test", "the train split", lower.format("test"))
        dev, train = take(train, sizes.dev, "dev", "the train split after test", lower.format("dev"))
        recipe = "dev and test carved out of train"
    held_out = {s for s, _ in dev} | {s for s, _ in test}
    before = len(train)
    train = [(s, refs) for s, refs in train if s not in held_out]
    labeled, rest = take(train, sizes.labeled, "labeled", "the train split",
                         "lower tasks[].sizes.labeled in the spec (the rest of train becomes the unlabeled split)")
    unlabeled, _ = take(rest, sizes.unlabeled, "unlabeled", "the train split after the labeled inputs",
                        "lower tasks[].sizes.unlabeled, or set it to null for all that remain")
    splits = {
        "labeled": [{"source": s, "target": refs[0]} for s, refs in labeled],
        "unlabeled": [{"source": s} for s, _ in unlabeled],
        "dev": [{"source": s, "references": refs[:sizes.references]} for s, refs in dev],
        "test": [{"source": s, "references": refs[:sizes.references]} for s, refs in test],
        "teacher_pool": [],
    }
    return splits, {"recipe": recipe, "train_inputs_also_in_dev_or_test": before - len(train),
                    "counts": {k: len(v) for k, v in splits.items()}}
