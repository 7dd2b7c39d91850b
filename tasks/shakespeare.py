"""Style transfer, modern English -> Shakespeare's original (the parallel corpus of Xu et al.,
2012, as split by Jhamtani et al., 2017: lines of the plays aligned with modern paraphrases).

Format: rows with text fields `modern` and `original`, splits train/validation/test (parquet,
jsonl or csv), e.g. one `train.jsonl`, `validation.jsonl`, `test.jsonl` with
{"modern": ..., "original": ...}. No Hub copy of this corpus with a documented schema could be
vetted, so the task has no default source: point `data.path` (or `data.files`) at a local copy;
`data.columns` maps other column names. The length filter (8-50 words on both sides) and the
7,000 labeled examples follow the paper's code (KD4Gen, `load_shakespeare`, which pools all
three splits and draws 750 dev examples; here dev comes from the smaller validation split alone,
hence 500).
"""
from tasks.base import SplitSizes
from tasks.dataset import DatasetTask, Fields, LengthFilter

TASK = DatasetTask(
    name="shakespeare",
    description="Shakespeare style transfer: modern English -> original (local copy of Xu et al. 2012; BLEU)",
    data=None,
    missing_data_hint=(
        "Expected: train/validation/test files with text columns `modern` and `original` (the Xu et al. 2012 "
        "parallel corpus, e.g. the splits of github.com/harsh19/Shakespearizing-Modern-English converted to "
        "jsonl); map other column names with data.columns: {modern: ..., original: ...}."
    ),
    reader=Fields(source="modern", target="original"),
    metric="bleu",
    prompt="shakespearize: ",
    max_source_tokens=96,
    max_target_tokens=96,
    filters=LengthFilter(min_source_words=8, max_source_words=50, min_target_words=8, max_target_words=50),
    default_sizes=SplitSizes(labeled=7_000, unlabeled=None, dev=500, test=None, teacher_pool=0, references=None),
)
