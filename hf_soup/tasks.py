"""Task descriptions: which columns hold the text, what the labels are, how predictions are scored.

    from hf_soup.tasks import Task, get_task, make_task
    get_task("mrpc")                                           # a GLUE preset
    make_task("tickets", ("subject", "body"), labels=("billing", "bug", "other"))   # anyone's data
    make_task("prices", ("description",), labels=None)         # regression
    Task.from_dict(record["data"]["task"])                     # what an ingredient was trained on

Why one type for every dataset: loaders, metrics, the sweep, the merge and the card all need the
same facts (text columns, label order, metrics, primary score, test splits, T5 prompt). A task is
data, not code: `Task.to_dict` is written into every sweep.json / ingredient.json / soup.json, so
the merge scores with exactly the labels, metrics and prompt the sweep trained with and never
re-infers them. The nine GLUE tasks are *presets* of the same type (`PRESETS`); the only things a
preset has that a user's task has not are where its data lives (`nyu-mll/glue` on the Hub, config =
its name) and `tsv`, the layout of GLUE's original TSV folders.

Labels: `label_names` are the `id2label` texts, in id order. `label_values` are the raw values the
data stores for them, in the same order (AG News: 1, 2, 3, 4 -> ids 0..3, names "1".."4"; a
string column: the strings themselves); only these values are accepted. For presets `label_values` is empty: a raw integer is then
the id itself (as `nyu-mll/glue`'s ClassLabel stores it) and a raw string is a label name
("entailment"). Presets list their labels in the id order of `nyu-mll/glue`, so a model fine-tuned
from the local TSVs and one fine-tuned from the Hub agree on `id2label`.

Primary score (the one number that ranks ingredients and drives greedy soup): the first metric of
a user's task. The GLUE presets keep GLUE's task score, which for some is a mean of two metrics:
  * CoLA: Matthews correlation;
  * MRPC, QQP: mean of F1 and accuracy; STS-B: mean of Pearson and Spearman (GLUE's leaderboard);
  * everything else: accuracy (MNLI: matched accuracy, since `test` is validation_matched).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hf_soup.errors import SoupError

HUB_DATASET = "nyu-mll/glue"

# What `--metric_name` accepts (hf_soup.metrics computes each). `spearmanr` is STS-B's historical
# key (kept so recorded STS-B scores keep their names); users write `spearman`.
CLASSIFICATION_METRICS = ("accuracy", "f1", "macro_f1", "matthews_correlation")
REGRESSION_METRICS = ("pearson", "spearman")
METRIC_CHOICES = CLASSIFICATION_METRICS + REGRESSION_METRICS
_LEGACY_METRICS = {"spearmanr": "spearman"}
MAX_TEXT_FIELDS = 2  # one text or a pair: what sequence-classification models take


@dataclass(frozen=True)
class TsvLayout:
    """Where a preset's fields live in GLUE's original TSV files (`download_glue_data.py`)."""

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
    """What a model is trained to predict from which columns, and how it is scored."""

    name: str
    text_fields: tuple[str, ...]  # column names in the loaded splits, e.g. ("sentence1", "sentence2")
    label_names: tuple[str, ...]  # id2label texts in id order; empty for regression
    metrics: tuple[str, ...]  # reported metrics, names as in hf_soup.metrics
    primary_metric: str  # the ranking score's name as shown to users
    primary_parts: tuple[str, ...]  # the metrics averaged into the primary score
    validation_splits: tuple[str, ...]  # source split names used as test splits; the first is `test`
    label_values: tuple[Any, ...] = ()  # raw label values in id order; empty: raw ints are ids, strings names
    prompt: str = ""  # T5 prompt prefix ("rte sentence1: … sentence2: …"); empty: the name
    tsv: TsvLayout | None = field(default=None, repr=False, compare=False)  # presets: GLUE's TSV layout

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
    def is_preset(self) -> bool:
        return PRESETS.get(self.name) == self

    @property
    def id2label(self) -> dict[int, str]:
        return {i: name for i, name in enumerate(self.label_names)} if self.label_names else {0: "score"}

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in self.id2label.items()}

    @property
    def t5_prompt(self) -> str:
        return self.prompt or self.name

    @property
    def test_split_names(self) -> tuple[str, ...]:
        """Our names for the test splits: `test`, then `test_<name>` (MNLI: `test_mismatched`)."""
        return tuple(test_split_name(i, source) for i, source in enumerate(self.validation_splits))

    def label_lookup(self) -> dict[Any, int]:
        """Raw label value -> id (see the module docstring for presets' ids-or-names rule)."""
        if self.label_values:
            return {value: i for i, value in enumerate(self.label_values)}
        lookup: dict[Any, int] = {name: i for i, name in enumerate(self.label_names)}
        lookup.update({i: i for i in range(len(self.label_names))})
        return lookup

    def with_test_splits(self, names: Sequence[str]) -> Task:
        return replace(self, validation_splits=tuple(names))

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the `data.task` block of sweep.json / ingredient.json / soup.json)."""
        record = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        record.pop("tsv")
        record["is_regression"] = self.is_regression
        record["is_pair"] = self.is_pair
        record["preset"] = self.is_preset
        record["prompt"] = self.t5_prompt
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any], where: str = "task") -> Task:
        """Inverse of `to_dict`; a preset's record gives back the preset itself (with its TSV layout)."""
        try:
            task = cls(
                name=str(record["name"]),
                text_fields=tuple(record["text_fields"]),
                label_names=tuple(str(n) for n in record["label_names"]),
                metrics=tuple(record["metrics"]),
                primary_metric=str(record["primary_metric"]),
                primary_parts=tuple(record["primary_parts"]),
                validation_splits=tuple(record["validation_splits"]),
                label_values=tuple(record.get("label_values") or ()),
                prompt=str(record.get("prompt") or ""),
            )
        except (KeyError, TypeError) as err:
            raise SoupError(f"{where}: not a task description ({type(err).__name__}: {err})") from None
        preset = PRESETS.get(task.name)
        if preset is not None and replace(preset, prompt=preset.t5_prompt) == replace(task, tsv=None):
            return preset
        return task


def test_split_name(position: int, source_split: str) -> str:
    """Our name for a task's `position`-th test split, read from `source_split` of the data."""
    if position == 0:
        return "test"
    return "test_" + source_split.removeprefix("validation_").removeprefix("test_")


def default_metrics(num_labels: int | None) -> tuple[str, ...]:
    """binary -> accuracy + f1; multi-class -> accuracy + macro_f1; regression (None) -> pearson + spearman."""
    if num_labels is None:
        return REGRESSION_METRICS
    return ("accuracy", "f1") if num_labels == 2 else ("accuracy", "macro_f1")


def check_metrics(metrics: Sequence[str], num_labels: int | None) -> tuple[str, ...]:
    """Validate `--metric_name` against the task kind; one-line errors name the offending metric."""
    chosen = tuple(_LEGACY_METRICS.get(m, m) for m in metrics)
    if not chosen:
        raise SoupError("metric_name: give at least one metric")
    allowed = REGRESSION_METRICS if num_labels is None else CLASSIFICATION_METRICS
    kind = "regression" if num_labels is None else "classification"
    for metric in chosen:
        if metric not in METRIC_CHOICES:
            raise SoupError(f"metric_name: unknown metric {metric!r}; choose from {', '.join(METRIC_CHOICES)}")
        if metric not in allowed:
            raise SoupError(f"metric_name: {metric!r} does not apply to {kind}; use {', '.join(allowed)}")
        if metric == "f1" and num_labels != 2:
            raise SoupError(f"metric_name: 'f1' is binary F1 and the task has {num_labels} labels; use macro_f1")
    if len(set(chosen)) != len(chosen):
        raise SoupError(f"metric_name: {', '.join(chosen)} names a metric twice")
    return chosen


def make_task(
    name: str,
    text_fields: Sequence[str],
    labels: Sequence[Any] | None,
    *,
    metrics: Sequence[str] | None = None,
    test_splits: Sequence[str] = ("test",),
    label_names: Sequence[str] | None = None,
    prompt: str | None = None,
) -> Task:
    """A user's task. `labels`: the raw label values in id order (None: regression); their texts
    become `id2label` unless `label_names` (e.g. a ClassLabel feature's names) are given. The first
    metric is the primary score."""
    text_fields = tuple(text_fields)
    if not 1 <= len(text_fields) <= MAX_TEXT_FIELDS or len(set(text_fields)) != len(text_fields):
        raise SoupError(
            f"text_column_names: {','.join(text_fields) or '(none)'}: give one text column or a pair of two "
            "different columns"
        )
    if labels is not None:
        labels = tuple(labels)
        if len(labels) < 2:
            raise SoupError(f"label column: only one label value {labels!r} in train, nothing to classify")
        names = tuple(str(n) for n in (label_names if label_names is not None else labels))
        if len(set(names)) != len(names):
            raise SoupError(f"label column: label values {list(labels)} do not have distinct names")
    else:
        names = ()
    num_labels = None if labels is None else len(labels)
    chosen = check_metrics(metrics, num_labels) if metrics else default_metrics(num_labels)
    values = () if labels is None else labels
    return Task(
        name=name,
        text_fields=text_fields,
        label_names=names,
        metrics=chosen,
        primary_metric=chosen[0],
        primary_parts=(chosen[0],),
        validation_splits=tuple(test_splits),
        label_values=values,
        prompt=prompt if prompt is not None else task_name_from(name),
    )


def task_name_from(text: str) -> str:
    """A readable task name (run folders, the card, the T5 prompt) from a dataset id or file name."""
    stem = re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")
    return stem or "task"


# Trailing parts of a data file's or dataset's name that say which split or which release, not which
# task: `snli_1.0_dev.jsonl` is "snli", `multinli_1.0_train` "multinli", `imdb_v2` "imdb".
_SPLIT_WORDS = frozenset({"train", "training", "dev", "development", "val", "valid", "validation", "test", "eval"})
_VERSION = re.compile(r"v?\d+")


def task_name_from_data(text: str) -> str:
    """The task name a file stem or dataset id gives: `task_name_from`, less trailing split words and
    version numbers (kept when nothing else is left, so `train.csv` stays "train")."""
    parts = task_name_from(text).split("_")
    while len(parts) > 1 and (parts[-1] in _SPLIT_WORDS or _VERSION.fullmatch(parts[-1])):
        parts.pop()
    return "_".join(parts)


_NLI_STRINGS = {"entailment": 0, "not_entailment": 1}

# fmt: off
PRESETS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "cola", ("sentence",), ("unacceptable", "acceptable"),
            ("matthews_correlation", "accuracy"), "matthews_correlation", ("matthews_correlation",),
            ("validation",),
            tsv=TsvLayout("CoLA", has_header=False, text_columns=(3,), label_column=1),
        ),
        Task(
            "sst2", ("sentence",), ("negative", "positive"),
            ("accuracy",), "accuracy", ("accuracy",), ("validation",),
            tsv=TsvLayout("SST-2", text_columns=("sentence",)),
        ),
        Task(
            "mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"),
            ("f1", "accuracy"), "f1_accuracy_mean", ("f1", "accuracy"), ("validation",),
            tsv=TsvLayout("MRPC", text_columns=("#1 String", "#2 String"), label_column="Quality"),
        ),
        Task(
            "stsb", ("sentence1", "sentence2"), (),
            ("pearson", "spearmanr"), "pearson_spearmanr_mean", ("pearson", "spearmanr"), ("validation",),
            tsv=TsvLayout("STS-B", text_columns=("sentence1", "sentence2"), label_column="score"),
        ),
        Task(
            "qqp", ("question1", "question2"), ("not_duplicate", "duplicate"),
            ("f1", "accuracy"), "f1_accuracy_mean", ("f1", "accuracy"), ("validation",),
            tsv=TsvLayout("QQP", text_columns=("question1", "question2"), label_column="is_duplicate"),
        ),
        Task(
            "mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
            ("accuracy",), "accuracy", ("accuracy",), ("validation_matched", "validation_mismatched"),
            tsv=TsvLayout(
                "MNLI", text_columns=("sentence1", "sentence2"), label_column="gold_label",
                label_map={"entailment": 0, "neutral": 1, "contradiction": 2},
                dev_files=("dev_matched.tsv", "dev_mismatched.tsv"),
            ),
        ),
        Task(
            "qnli", ("question", "sentence"), ("entailment", "not_entailment"),
            ("accuracy",), "accuracy", ("accuracy",), ("validation",),
            tsv=TsvLayout("QNLI", text_columns=("question", "sentence"), label_map=_NLI_STRINGS),
        ),
        Task(
            "rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"),
            ("accuracy",), "accuracy", ("accuracy",), ("validation",),
            tsv=TsvLayout("RTE", text_columns=("sentence1", "sentence2"), label_map=_NLI_STRINGS),
        ),
        Task(
            "wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"),
            ("accuracy",), "accuracy", ("accuracy",), ("validation",),
            tsv=TsvLayout("WNLI", text_columns=("sentence1", "sentence2")),
        ),
    )
}
# fmt: on


def get_task(name: str) -> Task:
    """Look a preset up by name (case-insensitive; `sst-2`/`sts-b` spellings accepted)."""
    key = name.strip().lower().replace("-", "")
    if key not in PRESETS:
        raise SoupError(
            f"unknown task {name!r}; GLUE presets: {', '.join(PRESETS)} (for your own data pass "
            "--dataset_name or --train_file instead of --task)"
        )
    return PRESETS[key]
