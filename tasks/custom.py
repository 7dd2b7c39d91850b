"""Custom tasks declared in the spec: your own JSONL / CSV / Parquet files, or any Hub dataset,
with named input / target (/ references) fields, a prompt, a metric, lengths and filters."""
from __future__ import annotations

from typing import Any

from tasks.base import SettingError, SplitSizes
from tasks.dataset import DatasetTask, Fields, LengthFilter
from tasks.sources import DataSource

# A custom task has no natural sizes: these are the paper's shape; small data must set its own.
# Every reference of a dev/test input is kept; no teacher-only pool unless the spec asks for one.
DEFAULT_SIZES = SplitSizes(labeled=2000, unlabeled=None, dev=500, test=None, teacher_pool=0, references=None)


def custom_task(name: str, *, source_field: str, target_field: str, references_field: str | None = None,
                prompt: str = "", metric: str = "bleu", bleu_tokenize: str = "13a", max_source_tokens: int = 256,
                max_target_tokens: int = 64,
                filters: dict[str, Any] | None = None, format: str | None = None,
                files: dict[str, Any] | None = None, path: str | None = None, config: str | None = None,
                revision: str | None = None, description: str | None = None) -> DatasetTask:
    """A `DatasetTask` reading `source_field` -> `target_field` (and, on dev/test rows, the list in
    `references_field`) from local `files` ({split: file(s)}) or a `path` (Hub id or local dir)."""
    data = DataSource.from_dict({"path": path, "files": files, "format": format, "config": config,
                                 "revision": revision})
    try:
        length_filter = LengthFilter(**(filters or {}))
    except SettingError as err:
        raise SettingError(f"filters.{err.field}", str(err)) from None
    return DatasetTask(
        name=name,
        description=description or f"custom task: {source_field} -> {target_field} from {data.describe()}",
        data=data,
        reader=Fields(source=source_field, target=target_field, references=references_field),
        metric=metric,
        bleu_tokenize=bleu_tokenize,
        prompt=prompt,
        max_source_tokens=max_source_tokens,
        max_target_tokens=max_target_tokens,
        filters=length_filter,
        default_sizes=DEFAULT_SIZES,
        definition_version="custom-2",
    )
