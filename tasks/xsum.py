"""XSum extreme summarization (Narayan et al., 2018): a BBC article -> its one-sentence summary.

Hub: `EdinburghNLP/xsum` (columns document, summary, id; splits train/validation/test). Its main
branch is a legacy loading script that `datasets` >= 4 no longer runs, so kdbench reads the
Hub's own Parquet export of it (revision `refs/convert/parquet`).
"""
from tasks.base import SplitSizes
from tasks.dataset import DatasetTask, Fields, LengthFilter
from tasks.sources import DataSource

TASK = DatasetTask(
    name="xsum",
    description="XSum summarization: BBC article -> one-sentence summary (EdinburghNLP/xsum; ROUGE-L)",
    data=DataSource(path="EdinburghNLP/xsum", revision="refs/convert/parquet"),
    reader=Fields(source="document", target="summary"),
    metric="rougeL",
    prompt="summarize: ",
    max_source_tokens=512,
    max_target_tokens=64,
    # Some articles lost their body text in extraction: skip empty rows, and stubs of < 20 words.
    filters=LengthFilter(min_source_words=20, min_target_words=3),
    skip_empty=True,
    default_sizes=SplitSizes(labeled=10_000, unlabeled=40_000, dev=1_000, test=1_000, teacher_pool=0,
                             references=None),
)
