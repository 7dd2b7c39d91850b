"""Dataset tasks: real data (a Hub dataset or local files) cut into the paper's realistic splits.

A `DatasetTask` is declarative: where the data lives (`DataSource`), how one row becomes an
input and its reference(s) (a `Reader`), length filters, a prompt, lengths and a metric. Its
`build` reads the rows, validates them (missing fields, empty or non-text values fail with the
split, file and row), drops rows outside the length filters and exact duplicate rows, groups
rows by input and cuts the splits (`realistic_splits`):

- dev and test come from the dataset's own validation and test splits; with only one of them it
  is divided into dev and test; with neither they are carved out of train. Evaluation rows that
  share an input are merged into one input with several references; every reference is kept
  unless `sizes.references` caps them (then the split info counts what was dropped);
- the train split is a list of (input, target) pairs: an input that repeats with different
  targets gives several pairs. `labeled` and `teacher_pool` count pairs and take every pair of
  the inputs they draw (only the last input drawn may be cut to hit the size exactly; its other
  pairs go nowhere); `unlabeled` counts inputs, one row per input;
- `teacher_pool` (0 unless asked for) is a teacher-only set of train pairs that emulates the
  head start of a pretrained teacher when the teacher is trained from scratch: the teacher
  trains on labeled + teacher_pool, students never see it (bench/stages.py).

Every split is disjoint from every other by input text. The draw is one seeded shuffle of the
distinct train inputs (per data seed): dev and test first when carved out of train, then
labeled from the front, teacher_pool from the back, unlabeled in between (all that remain when
`unlabeled` is null). So growing labeled or unlabeled never changes the teacher pool, growing
the teacher pool never changes labeled (nor a numbered unlabeled split that still fits), and
the training splits never change dev or test.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

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
    # bump when the reader or the recipe changes. 2: labeled keeps every (input, target) pair,
    # teacher_pool drawn from train, references kept in full unless capped
    definition_version: str = "2"
    missing_data_hint: str = ""  # why there is no default data source and what to give instead

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise SettingError("metric", f"metric {self.metric!r} is not supported; allowed: {', '.join(METRICS)}")

    @property
    def uses_teacher_pool(self) -> bool:
        """Whether the default sizes draw a teacher-only pool (a spec may ask for one anyway)."""
        return self.default_sizes.teacher_pool > 0

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
        """Validated, filtered rows of one original split, grouped by input: {input: [targets or
        references]}, distinct and in file order (for train, each is one (input, target) pair)."""
        if not rows:
            raise TaskDataError(f"task {self.name!r}: split {split!r} ({where}) is empty (no rows)")
        pool: dict[str, list[str]] = {}
        empty = filtered = duplicates = 0
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
            new = [r for r in dict.fromkeys(refs) if r not in known]
            duplicates += not new
            known.extend(new)
        stats["rows"][split] = len(rows)
        stats["dropped_empty"][split] = empty
        stats["dropped_by_filters"][split] = filtered
        repeats = len(rows) - empty - filtered - len(pool)  # rows whose input came earlier in the split
        if split == "train":
            stats["repeated_train_inputs"] = repeats - duplicates  # extra (input, target) pairs, all kept
            stats["duplicate_train_pairs_dropped"] = duplicates  # identical (input, target) rows
        else:
            stats["merged_duplicate_inputs"][split] = repeats  # their references joined the first row's
        if not pool:
            raise TaskDataError(f"task {self.name!r}: no row of split {split!r} ({where}) is left after the length "
                                f"filters {asdict(self.filters)} ({filtered} of {len(rows)} dropped); relax "
                                f"tasks[].filters")
        return pool


Pool = dict[str, list[str]]  # input -> its distinct targets (train) or references (dev/test)


def realistic_splits(task: str, pools: dict[str, Pool], sizes: SplitSizes,
                     seed: int) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Cut labeled / unlabeled / dev / test / teacher_pool from the original splits `pools`
    ({split: {input: targets or references}}); see the module docstring for the recipe. Returns
    the rows per split and what the cut did (for the data artifact's `task.json`)."""

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
    train = [(s, targets) for s, targets in train if s not in held_out]
    train_pairs = sum(len(targets) for _, targets in train)

    # labeled from the front of the shuffled train inputs, the teacher pool from the back
    labeled, n_labeled, cut_labeled = _take_pairs(train, sizes.labeled)
    if len(labeled) < sizes.labeled:
        raise TaskDataError(f"task {task!r}: sizes.labeled = {sizes.labeled} but the train split has only "
                            f"{train_pairs} (input, target) pairs ({len(train)} distinct inputs, after length "
                            f"filters, exact duplicates and inputs also in dev or test); lower "
                            f"tasks[].sizes.labeled in the spec")
    rest = train[n_labeled:]
    pool_rows, n_pool, cut_pool = _take_pairs(rest[::-1], sizes.teacher_pool)
    if len(pool_rows) < sizes.teacher_pool:
        raise TaskDataError(f"task {task!r}: sizes.teacher_pool = {sizes.teacher_pool} but the train split has only "
                            f"{len(pool_rows)} (input, target) pairs ({len(rest)} distinct inputs) left after the "
                            f"labeled split ({sizes.labeled} pairs of {n_labeled} inputs; {train_pairs} pairs of "
                            f"{len(train)} inputs in all); the teacher pool is disjoint from labeled, unlabeled, dev "
                            f"and test by input, so lower tasks[].sizes.teacher_pool or sizes.labeled in the spec")
    middle = rest[:len(rest) - n_pool]
    after = "the train split after the labeled inputs" + (" and the teacher pool" if n_pool else "")
    unlabeled, _ = take(middle, sizes.unlabeled, "unlabeled", after,
                        "lower tasks[].sizes.unlabeled" + (" or sizes.teacher_pool" if n_pool else "")
                        + ", or set it to null for all that remain")
    dev_rows, dev_refs = _with_references(dev, sizes.references)
    test_rows, test_refs = _with_references(test, sizes.references)
    splits = {
        "labeled": labeled,
        "unlabeled": [{"source": s} for s, _ in unlabeled],
        "dev": dev_rows,
        "test": test_rows,
        "teacher_pool": pool_rows,
    }
    info = {
        "recipe": recipe,
        "train_inputs_also_in_dev_or_test": before - len(train),
        # labeled examples are (input, target) pairs: an input repeated with other targets gives
        # several labeled rows; unlabeled and teacher_pool share no input with labeled
        "labeled_examples": "every (input, target) pair of the inputs drawn",
        "train_pairs": train_pairs,
        "distinct_train_inputs": len(train),
        "labeled_pairs": len(labeled),
        "distinct_labeled_inputs": n_labeled,
        "teacher_pool_pairs": len(pool_rows),
        "distinct_teacher_pool_inputs": n_pool,
        # pairs of the last labeled / teacher-pool input that did not fit the size (that input
        # belongs to its split, so its other pairs are in no split)
        "train_pairs_cut_at_split_ends": cut_labeled + cut_pool,
        "references": {"at_most": sizes.references, "dev": dev_refs, "test": test_refs},
        "counts": {k: len(v) for k, v in splits.items()},
    }
    return splits, info


def _take_pairs(groups: list[tuple[str, list[str]]], n: int) -> tuple[list[dict[str, str]], int, int]:
    """The first `n` (input, target) pairs of `groups` ({input, target} rows, every pair of each
    input in turn; fewer if there are not enough), how many inputs they use, and how many pairs
    of the last input used were left out to stop at exactly `n`."""
    rows: list[dict[str, str]] = []
    used = cut = 0
    for source, targets in groups:
        if len(rows) >= n:
            break
        room = n - len(rows)
        rows += [{"source": source, "target": t} for t in targets[:room]]
        cut = max(0, len(targets) - room)
        used += 1
    return rows, used, cut


def _with_references(items: list[tuple[str, list[str]]], at_most: int | None) -> tuple[list[dict], dict[str, int]]:
    """Evaluation rows with their references (the first `at_most`, or all for None) and counts
    of what was kept and dropped."""
    rows = [{"source": s, "references": refs if at_most is None else refs[:at_most]} for s, refs in items]
    kept = sum(len(r["references"]) for r in rows)
    return rows, {
        "inputs": len(rows),
        "references_kept": kept,
        "most_per_input_in_data": max((len(refs) for _, refs in items), default=0),
        "inputs_with_references_dropped": sum(len(refs) > len(r["references"]) for (_, refs), r in zip(items, rows)),
        "references_dropped": sum(len(refs) for _, refs in items) - kept,
    }
