"""The GLUE task registry: everything task-specific, as data.

Why a registry: loaders, metrics, the sweep and the card all need the same facts (text columns,
label order, metric, validation split names, the original TSV layout). Keeping them in one table
means adding a task is one entry, not edits in five modules.

Label names are in the id order of the Hub's `nyu-mll/glue` parquet files, so a model fine-tuned
from the local TSVs and one fine-tuned from the Hub agree on `id2label`.

Primary score (the one number used to rank ingredients and drive greedy soup):
  * CoLA: Matthews correlation (GLUE's metric).
  * MRPC, QQP: mean of F1 and accuracy (GLUE reports both; the mean is the GLUE leaderboard's
    task score).
  * STS-B: mean of Pearson and Spearman correlation (likewise).
  * everything else: accuracy (MNLI: matched accuracy, since `test` is validation_matched).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_soup.errors import SoupError

HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class TsvLayout:
    """Where a task's fields live in GLUE's original TSV files (`download_glue_data.py`)."""

    folder: str  # e.g. "RTE"
    has_header: bool = True
    # Column of each text field and of the label. A str is a header name, an int a position
    # (used where there is no header, i.e. CoLA).
    text_columns: tuple[str | int, ...] = ()
    label_column: str | int = "label"
    # Maps a label string in the TSV to the Hub id. None: the TSV already stores the id (or a float).
    label_map: dict[str, int] | None = None
    train_file: str = "train.tsv"
    dev_files: tuple[str, ...] = ("dev.tsv",)


@dataclass(frozen=True)
class Task:
    name: str
    text_fields: tuple[str, ...]  # column names as on the Hub, e.g. ("sentence1", "sentence2")
    label_names: tuple[str, ...]  # in Hub id order; empty for regression
    metrics: tuple[str, ...]  # reported metrics, names as in hf_soup.metrics
    primary_metric: str  # the ranking score's name as shown to users
    primary_parts: tuple[str, ...]  # the metrics averaged into the primary score
    validation_splits: tuple[str, ...]  # Hub split names used as `test`; first one is primary
    tsv: TsvLayout = field(repr=False, default_factory=lambda: TsvLayout(folder=""))

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    @property
    def id2label(self) -> dict[int, str]:
        return {i: name for i, name in enumerate(self.label_names)} if self.label_names else {0: "score"}

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in self.id2label.items()}

    @property
    def test_split_names(self) -> tuple[str, ...]:
        """Our split names for GLUE's dev set(s): `test`, plus `test_mismatched` for MNLI."""
        _first, *rest = self.validation_splits
        return ("test", *("test" + split.removeprefix("validation") for split in rest))


_NLI_STRINGS = {"entailment": 0, "not_entailment": 1}

# fmt: off
TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "cola", ("sentence",), ("unacceptable", "acceptable"),
            ("matthews_correlation", "accuracy"), "matthews_correlation", ("matthews_correlation",),
            ("validation",),
            TsvLayout("CoLA", has_header=False, text_columns=(3,), label_column=1),
        ),
        Task(
            "sst2", ("sentence",), ("negative", "positive"),
            ("accuracy",), "accuracy", ("accuracy",), ("validation",),
            TsvLayout("SST-2", text_columns=("sentence",)),
        ),
        Task(
            "mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"),
            ("f1", "accuracy"), "f1_accuracy_mean", ("f1", "accuracy"), ("validation",),
            TsvLayout("MRPC", text_columns=("#1 String", "#2 String"), label_column="Quality"),
        ),
        Task(
            "stsb", ("sentence1", "sentence2"), (),
            ("pearson", "spearmanr"), "pearson_spearmanr_mean", ("pearson", "spearmanr"), ("validation",),
            TsvLayout("STS-B", text_columns=("sentence1", "sentence2"), label_column="score"),
        ),
        Task(
            "qqp", ("question1", "question2"), ("not_duplicate", "duplicate"),
            ("f1", "accuracy"), "f1_accuracy_mean", ("f1", "accuracy"), ("validation",),
            TsvLayout("QQP", text_columns=("question1", "question2"), label_column="is_duplicate"),
        ),
        Task(
            "mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
            ("accuracy",), "accuracy", ("accuracy",), ("validation_matched", "validation_mismatched"),
            TsvLayout(
                "MNLI", text_columns=("sentence1", "sentence2"), label_column="gold_label",
                label_map={"entailment": 0, "neutral": 1, "contradiction": 2},
                dev_files=("dev_matched.tsv", "dev_mismatched.tsv"),
            ),
        ),
        Task(
            "qnli", ("question", "sentence"), ("entailment", "not_entailment"),
            ("accuracy",), "accuracy", ("accuracy",), ("validation",),
            TsvLayout("QNLI", text_columns=("question", "sentence"), label_map=_NLI_STRINGS),
        ),
        Task(
            "rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"),
            ("accuracy",), "accuracy", ("accuracy",), ("validation",),
            TsvLayout("RTE", text_columns=("sentence1", "sentence2"), label_map=_NLI_STRINGS),
        ),
        Task(
            "wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"),
            ("accuracy",), "accuracy", ("accuracy",), ("validation",),
            TsvLayout("WNLI", text_columns=("sentence1", "sentence2")),
        ),
    )
}
# fmt: on


def get_task(name: str) -> Task:
    """Look a task up by name (case-insensitive; `sst-2`/`sts-b` spellings accepted)."""
    key = name.strip().lower().replace("-", "")
    if key not in TASKS:
        raise SoupError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[key]
