"""The data flags (`DataArguments`, run_classification.py's names) and their checks before anything is read."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from hf_soup.errors import SoupError
from hf_soup.tasks import get_task

# run_classification.py's names for DataArguments fields (flags take them as aliases; a sweep's YAML too).
FLAG_ALIASES = {"max_eval_samples": "max_test_samples", "max_predict_samples": "max_test_samples"}


def _flag_aliases(name: str) -> list[str]:
    """The extra option strings of field `name`, with underscores and with dashes like every flag."""
    return [f"--{alias.replace('_', sep)}" for alias, to in FLAG_ALIASES.items() if to == name for sep in "_-"]


# DataArguments fields that say where the data is: the merge may repoint them (hashes must match).
LOCATION_FIELDS = ("train_file", "validation_file", "test_file", "heldout_file", "glue_dir", "dataset_name")


@dataclass
class DataArguments:
    """Which data, which columns, how to split it. Field names double as CLI flags (HfArgumentParser)."""

    task: str | None = field(
        default=None,
        metadata={
            "help": "a GLUE preset: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli (your own data: "
            "--train_file or --dataset_name)"
        },
    )
    task_name: str | None = field(
        default=None,
        metadata={
            "help": "your task's name (card title and tags, T5 prompt); default: the dataset id's last part, "
            "or the train file's name less split words and release numbers (snli_1.0_dev.jsonl is snli; the "
            "nearest folder's name when it is generic: tickets/data/train.csv is tickets)"
        },
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "a Hub dataset id (or a local dataset folder), loaded with datasets"}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "the dataset's configuration"})
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Hub revision (branch, tag or commit) of --dataset_name / a preset"}
    )
    train_file: str | None = field(default=None, metadata={"help": "training data: csv, tsv, json, jsonl, parquet"})
    validation_file: str | None = field(
        default=None, metadata={"help": "validation data (the test split when there is no --test_file)"}
    )
    test_file: str | None = field(default=None, metadata={"help": "test data: reported, never used to choose"})
    text_column_names: str | None = field(
        default=None, metadata={"help": "the text column, or two comma-separated for pairs (default: inferred)"}
    )
    label_column_name: str = field(default="label", metadata={"help": "the label column"})
    do_regression: bool | None = field(
        default=None, metadata={"help": "regression instead of classification (default: float labels -> true)"}
    )
    metric_name: list[str] | None = field(
        default=None,
        metadata={
            "help": "accuracy, f1, macro_f1, matthews_correlation, pearson, spearman (first = primary; default: "
            "binary accuracy f1, multi-class accuracy macro_f1, regression pearson spearman)"
        },
    )
    glue_dir: str | None = field(
        default=None, metadata={"help": "with --task: a local folder in GLUE's original TSV layout"}
    )
    tsv_quoting: str = field(
        default="none", metadata={"help": "tsv files: 'none' (quotes are text, GLUE's rule) or 'csv' (RFC 4180)"}
    )
    test_split: str | None = field(
        default=None, metadata={"help": "dataset split(s) used as test, comma-separated (default: test, validation)"}
    )
    heldout_split: str | None = field(
        default=None, metadata={"help": "a dataset split to use as held-out instead of carving it from train"}
    )
    heldout_file: str | None = field(
        default=None, metadata={"help": "a file to use as held-out instead of carving it from train"}
    )
    heldout_size: float = field(
        default=0.1, metadata={"help": "held-out rows carved from train: fraction (<1) or count"}
    )
    heldout_min: int = field(default=100, metadata={"help": "floor on the held-out size when a fraction is given"})
    heldout_max: int = field(default=2000, metadata={"help": "cap on the held-out size when a fraction is given"})
    heldout_seed: int = field(default=0, metadata={"help": "seed of the held-out carve (keep fixed across a sweep)"})
    test_split_size: float = field(
        default=0.1,
        metadata={"help": "when there is no test split: rows carved from train as test (fraction or count)"},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "subsample train (after carving)"})
    max_test_samples: int | None = field(
        default=None,
        metadata={
            "help": "subsample each test split for quick runs (run_classification.py's --max_eval_samples and "
            "--max_predict_samples mean this: every split a soup reports is a test split)",
            "aliases": _flag_aliases("max_test_samples"),
        },
    )
    max_seq_length: int = field(default=128, metadata={"help": "truncate tokenised inputs to this many tokens"})


def _columns_list(value: str | list | tuple | None) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _metric_list(value: list[str] | str | None) -> list[str]:
    return [m for item in ([value] if isinstance(value, str) else value or []) for m in _columns_list(item)]


def _check_request(args: DataArguments) -> None:
    sources = [name for name in ("glue_dir", "dataset_name", "train_file") if getattr(args, name)]
    if len(sources) > 1:
        raise SoupError(f"give one data source, not {' and '.join('--' + s for s in sources)}")
    if not sources and not args.task:
        raise SoupError(
            "no data given: pass --train_file FILE (csv, tsv, json, parquet), --dataset_name HUB_ID, "
            "or --task with a GLUE preset"
        )
    for name in ("validation_file", "test_file"):  # a held-out file goes with any source (data.splits)
        if getattr(args, name) and not args.train_file:
            raise SoupError(f"--{name} needs --train_file (or use --dataset_name / --task)")
    if args.glue_dir and args.task and get_task(args.task).tsv is None:
        raise SoupError(f"glue_dir: task {args.task} has no GLUE TSV layout")
    if args.task and args.task_name:
        raise SoupError(f"task_name: the preset {args.task} is named already; drop --task to name your own task")
    if args.task and args.metric_name:
        raise SoupError(f"metric_name: the preset {args.task}'s metrics are fixed; drop --task to choose your own")
    if args.heldout_split and args.heldout_file:
        raise SoupError("give --heldout_split or --heldout_file, not both")
    check_numbers(args)
    if args.heldout_split == "train":
        raise SoupError("heldout_split: 'train' is the training split; held-out rows must not be trained on")


def check_numbers(args: DataArguments) -> None:
    """Every numeric data flag in its range (NaN included), before anything is read or written."""
    import math

    def bad(name: str, rule: str) -> SoupError:
        return SoupError(f"{name}={getattr(args, name)!r}: {rule}")

    for name in ("max_train_samples", "max_test_samples"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise bad(name, "must be a whole number >= 1 (leave it out to keep every row)")
    for name in ("heldout_size", "test_split_size"):
        value = getattr(args, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise bad(name, "must be a fraction in (0, 1) or a row count >= 1")
        if value > 1 and value != int(value):
            raise bad(name, "a row count must be a whole number")
    for name in ("heldout_min", "heldout_max", "max_seq_length"):
        if getattr(args, name) is not None and not getattr(args, name) >= 1:
            raise bad(name, "must be a whole number >= 1")
    if args.heldout_min > args.heldout_max:
        raise bad("heldout_min", f"must be <= heldout_max ({args.heldout_max})")
    if args.heldout_seed < 0:
        raise bad("heldout_seed", "must be >= 0")


def arguments_from_description(description: dict[str, Any], where: str = "data") -> DataArguments:
    """The DataArguments a recorded `data` block was made with (unknown keys ignored)."""
    recorded = description.get("arguments")
    if not isinstance(recorded, dict):
        raise SoupError(f"{where}: field 'data.arguments' is missing")
    known = {f.name for f in fields(DataArguments)}
    return DataArguments(**{k: v for k, v in recorded.items() if k in known})
