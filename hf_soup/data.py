"""Load a task's data (a GLUE preset, any Hub dataset, your own files), split it, tokenise once and cache.

    python -m hf_soup.data --train_file news.csv --text_column_names title,description   # inspect the splits
    python -m hf_soup.data --dataset_name stanfordnlp/imdb
    python -m hf_soup.data --task rte --glue_dir ../shared/glue

Where the data comes from (the flags of transformers' `run_classification.py`, so habits carry over):
  * `--train_file` [`--validation_file`, `--test_file`]: csv, tsv, json / jsonl, parquet, chosen by
    the extension (also compressed: `.csv.gz`…), loaded with `datasets`. CSV is RFC 4180 (quoted
    fields may hold commas, quotes and newlines). TSV is read *without* quote processing
    (`--tsv_quoting none`, the IANA TSV rule GLUE's files follow: a field cannot hold a tab or a
    newline and a `"` is just a character; with CSV quoting, GLUE's unbalanced quotes silently merge
    rows). A TSV written with CSV-style quotes (pandas' `to_csv(sep="\\t")`) needs
    `--tsv_quoting csv`; the output says so when most text fields look quoted. Every cell of a
    csv/tsv is read as text (no per-chunk type guessing); label types are inferred below.
  * `--dataset_name ID` [`--dataset_config_name`, `--dataset_revision`]: any Hub dataset
    (`datasets.load_dataset_builder`; the commit it resolved to is recorded), or a local folder
    (data files, or a `save_to_disk` folder).
  * `--task PRESET`: a GLUE preset (hf_soup.tasks), from `nyu-mll/glue` on the Hub or from
    `--glue_dir` (GLUE's original TSV folders). Combined with `--train_file` or `--dataset_name`,
    the preset's labels, metrics and primary score apply to that data (columns by the flags below).
Columns: `--text_column_names a` or `a,b` (default: the preset's; else the train split's one or two
columns named as usual, `USUAL_TEXT_COLUMNS` ("text", "sentence1,sentence2", ...); else the one or
two columns besides the label and an id column), `--label_column_name` (default `label`).
Labels: a ClassLabel feature's names, else the sorted distinct training values (ints stay ints:
AG News' 1..4 become ids 0..3 named "1".."4"; strings keep their text). Regression: `--do_regression`,
default inferred (float labels -> regression; csv/tsv labels that all parse as integers are
classes, as numbers otherwise, as text otherwise; a column mixing numbers and text is refused).
Test labels never seen in train, empty or NaN labels, non-numeric regression labels: one-line
errors naming the file, column and row (1-based data row, header not counted).

Splits, every source alike (nothing is ever chosen on a test split):
  * `test` — `--test_file`, else the dataset's `test` split when it has labels, else its
    `validation` split (`--test_split a,b` names them; MNLI's preset has two: `test`,
    `test_mismatched`). With no such split, test is carved from train first: `--test_split_size`
    (default 10 %, at least 100, at most 5,000 rows) with the fixed seed `CARVED_TEST_SEED`,
    independent of `--heldout_seed`; the output announces it and the data description records it;
  * `heldout` — what greedy soup and every other choice uses: carved from the rest of train with
    `--heldout_seed` (`--heldout_size`: a fraction clamped to [`--heldout_min`, `--heldout_max`],
    defaults 10 %, 100, 2,000; or a count), or a split of its own (`--heldout_split validation`,
    `--heldout_file`);
  * `train` — the rest, optionally subsampled (`--max_train_samples`, a prefix of the seeded
    permutation: growing it only adds rows, and the held-out split never moves).
`TaskSplits.fingerprint` identifies the held-out rows themselves (their source indices, texts and
labels): equal fingerprints mean the same held-out examples, whatever the command. The data
description (`TaskSplits.description()`, the `data` block of sweep.json / ingredient.json /
soup.json, docs/FORMATS.md) holds the task, the arguments that rebuild these splits and what
identifies the bytes (file sha256s, the Hub commit), so a merge needs no data flags; if the files
moved, the same flags point at them, and their sha256 must match.

Large datasets stay in Arrow tables: columns are selected, cast and label-encoded with pyarrow
compute, splits are index selections, and only the held-out rows are hashed row by row.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_soup.atomic import atomic_dir
from hf_soup.errors import DefaultsHelpFormatter, SoupError, cli_main
from hf_soup.quiet import quiet_datasets
from hf_soup.tasks import (
    HUB_DATASET,
    MAX_TEXT_FIELDS,
    PRESETS,
    Task,
    get_task,
    make_task,
    task_name_from,
    test_split_name,
)

if TYPE_CHECKING:  # imported where used: `python -m hf_soup.merge --skip_scoring` never loads datasets
    from datasets import Dataset, DatasetDict

csv.field_size_limit(sys.maxsize)

# Bump when tokenised features change shape, so old caches are not reused.
TOKENIZE_CACHE_VERSION = 2
# The test split carved from train when a dataset has none: fixed, so every run gets the same one.
CARVED_TEST_SEED = 20_261_123
TEST_SUBSAMPLE_SEED = 0  # --max_test_samples: which rows a subsampled test split keeps
CARVED = "train"  # a task's `validation_splits` when its test split was carved from train
FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".lz4")
# Text columns when --text_column_names is not given: these usual names first (run_classification.py
# reads "sentence" by default), else the one or two columns besides the label and an id column. The
# output names the columns it took.
USUAL_TEXT_COLUMNS = (
    ("sentence1", "sentence2"), ("premise", "hypothesis"), ("question1", "question2"), ("text_a", "text_b"),
    ("text",), ("sentence",),
)  # fmt: skip
ID_COLUMNS = frozenset({"id", "idx", "index", "guid", "uid", "uuid", "row_id", "example_id"})
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
            "or the train file's stem (the nearest folder's name when it is generic: tickets/data/train.csv is tickets)"
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
    max_test_samples: int | None = field(default=None, metadata={"help": "subsample each test split for quick runs"})
    max_seq_length: int = field(default=128, metadata={"help": "truncate tokenised inputs to this many tokens"})


@dataclass
class TaskSplits:
    """train / heldout / test (+ more test splits) as `datasets.Dataset`s, and how they were made."""

    task: Task
    splits: DatasetDict
    source: str  # human-readable origin, e.g. "hub:nyu-mll/glue@<sha>", "local:/path/glue", "files:/path/a.csv"
    fingerprint: str  # identifies the held-out rows
    heldout_seed: int
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    origin: dict[str, Any] = field(default_factory=dict)  # kind + what identifies the bytes (sha256, commit)
    arguments: dict[str, Any] = field(default_factory=dict)  # DataArguments that rebuild exactly these splits
    heldout: dict[str, Any] = field(default_factory=dict)  # how held-out was made
    tests: dict[str, Any] = field(default_factory=dict)  # how each test split was made
    notes: list[str] = field(default_factory=list)  # what the user should be told (carved test, ...)
    legacy: Callable[[], str] | None = field(default=None, repr=False)  # format-1 fingerprint (presets)
    full_train: Dataset | None = field(default=None, repr=False)  # every row of the source's train split

    def __getitem__(self, name: str) -> Dataset:
        return self.splits[name]

    def describe(self) -> dict[str, Any]:
        """The `split` block of ingredient.json / soup.json (a summary; `description()` rebuilds)."""
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "heldout_seed": self.heldout_seed,
            "heldout_size": len(self.splits["heldout"]),
            "train_size": len(self.splits["train"]),
            "test_size": len(self.splits["test"]),
            "test_sizes": {name: len(self.splits[name]) for name in self.task.test_split_names},
            "heldout_from": self.heldout.get("from"),
            "max_train_samples": self.max_train_samples,
            "max_test_samples": self.max_test_samples,
        }

    def description(self) -> dict[str, Any]:
        """The `data` block of sweep.json / ingredient.json / soup.json (docs/FORMATS.md)."""
        return {
            "task": self.task.to_dict(),
            "source": self.origin,
            "arguments": self.arguments,
            "heldout": {**self.heldout, "fingerprint": self.fingerprint},
            "test": self.tests,
            "sizes": {name: len(dataset) for name, dataset in self.splits.items()},
        }

    @property
    def identity(self) -> str:
        """Hash of what determines the splits' content: the token cache key's and the sweep id's data part.

        Paths are left out (the bytes are in: file sha256s, the Hub commit), so moving the files
        keeps the identity; `max_seq_length` too (it is part of those keys on its own).
        """

        def strip(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items() if k not in ("path", "where")}
            return value

        payload = strip({k: v for k, v in self.description().items() if k != "sizes"})
        payload["arguments"] = {
            k: v for k, v in self.arguments.items() if k not in (*LOCATION_FIELDS, "max_seq_length")
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def legacy_fingerprint(self) -> str | None:
        """The fingerprint format-1 ingredients recorded (train content, seed, count): presets only."""
        return self.legacy() if self.legacy else None


GlueSplits = TaskSplits  # the historical name


# ----------------------------------------------------------------------------- small helpers


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_sha256(folder: Path) -> str:
    """sha256 over a folder's files (relative path + bytes, sorted), skipping hidden files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + file_sha256(path).encode())
    return digest.hexdigest()


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception of an explicit or implicit chain (`raise ... from None` ends it)."""
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        inner = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
        if inner is None:
            break
        err = inner
    return err


def _one_line(err: BaseException) -> str:
    cause = _root_cause(err)
    text = " ".join(str(cause).split()) or type(cause).__name__
    return f"{type(cause).__name__}: {text[:300]}"


def _columns_list(value: str | list | tuple | None) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _metric_list(value: list[str] | str | None) -> list[str]:
    return [m for item in ([value] if isinstance(value, str) else value or []) for m in _columns_list(item)]


# ----------------------------------------------------------------------------- GLUE's TSV folders


def _parse_label(task: Task, raw: str, where: str) -> int | float:
    raw = raw.strip()
    layout = task.tsv
    if task.is_regression:
        try:
            return float(raw)
        except ValueError:
            raise SoupError(f"{where}: label {raw!r} is not a number") from None
    if layout.label_map is not None:
        if raw not in layout.label_map:
            raise SoupError(f"{where}: label {raw!r} is not one of {sorted(layout.label_map)}")
        return layout.label_map[raw]
    if raw not in {str(i) for i in range(task.num_labels)}:
        raise SoupError(f"{where}: label {raw!r} is not one of {list(range(task.num_labels))}")
    return int(raw)


def read_glue_tsv(task: Task, path: Path) -> dict[str, list]:
    """Read one labelled GLUE TSV into columns {text fields..., label, idx}, checking every row."""
    layout = task.tsv
    if not path.is_file():
        raise SoupError(f"{path}: missing file for task {task.name!r}")
    columns: dict[str, list] = {name: [] for name in (*task.text_fields, "label", "idx")}
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None) if layout.has_header else None
        if layout.has_header and header is None:
            raise SoupError(f"{path}: empty file")

        def position(column: str | int) -> int:
            if isinstance(column, int):
                return column
            if column not in header:
                raise SoupError(f"{path}:1: header has no column {column!r} (found {header})")
            return header.index(column)

        text_positions = [position(c) for c in layout.text_columns]
        label_position = position(layout.label_column)
        width = len(header) if header is not None else None
        first_line = 2 if layout.has_header else 1
        for row_number, row in enumerate(reader):
            line = first_line + row_number
            if width is None:
                width = len(row)
                if width <= max(*text_positions, label_position):
                    raise SoupError(
                        f"{path}:{line}: expected at least {max(*text_positions, label_position) + 1} columns"
                    )
            if len(row) != width:
                raise SoupError(f"{path}:{line}: expected {width} columns, found {len(row)}")
            for name, pos in zip(task.text_fields, text_positions):
                columns[name].append(row[pos])
            columns["label"].append(_parse_label(task, row[label_position], f"{path}:{line}"))
            columns["idx"].append(row_number)
    if not columns["idx"]:
        raise SoupError(f"{path}: no rows")
    return columns


def _load_glue_dir(task: Task, glue_dir: str) -> tuple[dict[str, Dataset], dict[str, str], dict[str, Any]]:
    """A preset's splits from GLUE's TSV folder, in the preset's columns (labels already ids)."""
    from datasets import Dataset

    root = Path(glue_dir).expanduser()
    if not root.is_dir():
        raise SoupError(f"{root}: GLUE folder does not exist")
    folder = root / task.tsv.folder
    if not folder.is_dir():
        raise SoupError(f"{folder}: missing task folder for {task.name!r} in {root}")
    paths = {"train": folder / task.tsv.train_file}
    paths.update({split: folder / name for split, name in zip(task.validation_splits, task.tsv.dev_files)})
    raw = {split: Dataset.from_dict(read_glue_tsv(task, path)) for split, path in paths.items()}
    files = {split: {"path": str(path.resolve()), "sha256": file_sha256(path)} for split, path in paths.items()}
    origin = {"kind": "glue_dir", "path": str(root.resolve()), "files": files}
    return raw, {split: str(path) for split, path in paths.items()}, origin


# ----------------------------------------------------------------------------- files and Hub datasets


def file_format(path: str | os.PathLike) -> str:
    """csv | tsv | json | parquet, from the extension (a compression suffix is looked through)."""
    name = Path(path).name.lower()
    for suffix in COMPRESSIONS:
        name = name.removesuffix(suffix)
    extension = Path(name).suffix
    if extension not in FILE_FORMATS:
        raise SoupError(
            f"{path}: unknown file extension {extension or '(none)'!r}; use one of "
            f"{', '.join(FILE_FORMATS)} (optionally compressed: {', '.join(COMPRESSIONS)})"
        )
    return FILE_FORMATS[extension]


def _csv_options(fmt: str, quoting: str) -> dict[str, Any]:
    if quoting not in ("none", "csv"):
        raise SoupError(f"tsv_quoting: {quoting!r} is not 'none' or 'csv'")
    # Every cell literal text; no implicit index column (pandas silently takes a row's extra leading
    # field as an index, shifting every column: with index_col=False it warns, and we refuse).
    options: dict[str, Any] = {"encoding": "utf-8-sig", "na_filter": False, "index_col": False}
    if fmt == "tsv":
        options.update(sep="\t", quoting=csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL)
    return options


def load_data_file(path: str | os.PathLike, quoting: str = "none") -> Dataset:
    """One csv/tsv/json/jsonl/parquet file as a `datasets.Dataset` (csv/tsv: every column as text)."""
    from datasets import Features, Value, load_dataset

    path = Path(path).expanduser()
    fmt = file_format(path)
    if not path.is_file():
        raise SoupError(f"{path}: file not found")
    import pandas as pd

    kwargs: dict[str, Any] = {}
    if fmt in ("csv", "tsv"):
        kwargs = _csv_options(fmt, quoting)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                first = pd.read_csv(path, nrows=1, dtype=object, **kwargs)
        except pd.errors.EmptyDataError:
            raise SoupError(f"{path}: empty file (no header row)") from None
        except Exception as err:
            raise SoupError(f"{path}: cannot be read as {fmt} ({_one_line(err)})") from None
        if len(first) == 0:
            raise SoupError(f"{path}: no rows")
        kwargs["features"] = Features({name: Value("string") for name in first.columns})
    builder = "csv" if fmt == "tsv" else fmt
    try:
        with warnings.catch_warnings(), quiet_datasets():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # csv/tsv rows wider than the header
            dataset = load_dataset(builder, data_files={"train": str(path)}, split="train", **kwargs)
    except Exception as err:  # a malformed row, bad JSON, a truncated parquet...: one line naming the file
        if "corresponds to no data" in str(err):
            raise SoupError(f"{path}: no rows") from None
        raise SoupError(f"{path}: cannot be read as {fmt} ({_one_line(err)})") from None
    return dataset


def _load_files(args: DataArguments) -> tuple[dict[str, Dataset], dict[str, str], dict[str, Any]]:
    given = {
        "train": args.train_file,
        "validation": args.validation_file,
        "test": args.test_file,
        "heldout": args.heldout_file,
    }
    paths = {split: Path(path).expanduser() for split, path in given.items() if path}
    for path in paths.values():
        file_format(path)  # an unknown extension is refused before anything is read
    raw = {split: load_data_file(path, args.tsv_quoting) for split, path in paths.items()}
    files = {split: {"path": str(path.resolve()), "sha256": file_sha256(path)} for split, path in paths.items()}
    origin: dict[str, Any] = {"kind": "files", "files": files}
    if any(file_format(p) == "tsv" for p in paths.values()):
        origin["tsv_quoting"] = args.tsv_quoting
    return raw, {split: str(path) for split, path in paths.items()}, origin


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~", os.sep)) or name.endswith(("/", os.sep)) or name.count("/") > 1


def _offline_hint() -> str:
    flags = [name for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE") if os.environ.get(name, "") not in ("", "0")]
    return f" (offline: {'/'.join(flags)} is set)" if flags else ""


def _load_dataset_name(
    name: str, config: str | None, revision: str | None
) -> tuple[dict[str, Dataset], dict[str, str], dict[str, Any]]:
    """A Hub dataset (resolved to one commit) or a local dataset folder, split by split."""
    from datasets import Dataset, DatasetDict, load_dataset_builder, load_from_disk

    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            loaded = load_from_disk(str(path))
            loaded = loaded if isinstance(loaded, DatasetDict) else DatasetDict(train=loaded)
        else:
            try:
                builder = load_dataset_builder(str(path), config)
                builder.download_and_prepare()
                loaded = builder.as_dataset()
            except Exception as err:
                raise SoupError(f"{path}: cannot be loaded as a dataset folder ({_one_line(err)})") from None
        origin = {"kind": "folder", "path": str(path.resolve()), "config": config, "sha256": folder_sha256(path)}
        where = str(path)
    elif path.exists() or _looks_like_path(name):
        raise SoupError(f"dataset_name {name}: not a dataset folder (and not a Hub dataset id)")
    else:
        try:
            builder = load_dataset_builder(name, config, revision=revision)
            builder.download_and_prepare()
            loaded = builder.as_dataset()
        except Exception as err:  # unknown id, offline, gated, missing config, unknown revision...
            raise SoupError(
                f"dataset_name {name}: cannot load it from the Hub{_offline_hint()} ({_one_line(err)})"
            ) from None
        resolved = (
            builder.hash if isinstance(builder.hash, str) and re.fullmatch(r"[0-9a-f]{40}", builder.hash) else None
        )
        origin = {"kind": "hub", "dataset_name": name, "config": config, "revision": resolved or revision}
        where = name + (f"/{config}" if config else "")
    raw: dict[str, Dataset] = {str(split): ds for split, ds in loaded.items() if isinstance(ds, Dataset)}
    return raw, {split: f"{where}[{split}]" for split in raw}, origin


# ----------------------------------------------------------------------------- labels


def _arrow(dataset: Dataset):
    """The dataset's rows as a pyarrow Table (an index selection is applied first)."""
    if dataset._indices is not None:
        dataset = dataset.flatten_indices()
    return dataset.data.table


def _row_error(where: str, column: str, row: int, message: str) -> SoupError:
    return SoupError(f"{where}: column {column!r}, row {row + 1}: {message}")


_INT = r"\s*[-+]?\d+\s*"
_FLOAT = r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*"


def _first(mask) -> int:
    import pyarrow.compute as pc

    return int(pc.index(mask, True).as_py())


def canonical_labels(column, kind: str | None, where: str, name: str, do_regression: bool | None):
    """A label column as one clean Arrow array of ints, floats or strings, and its kind.

    `kind` None infers it (train); otherwise the column must be of that kind (test, held-out).
    Empty / null / NaN labels are refused, naming the row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(column) == 0:
        raise SoupError(f"{where}: no rows")
    if column.null_count:
        raise _row_error(where, name, _first(column.is_null()), "empty label")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        stripped = pc.utf8_trim_whitespace(column)
        empty = pc.or_(pc.equal(stripped, ""), pc.match_substring_regex(stripped, r"^(?i:nan)$"))
        if pc.any(empty).as_py():
            raise _row_error(where, name, _first(empty), f"empty or NaN label {column[_first(empty)].as_py()!r}")
        is_int = pc.match_substring_regex(column, f"^{_INT}$")
        is_float = pc.match_substring_regex(column, f"^{_FLOAT}$")
        want = kind or ("float" if do_regression else None)
        if want in (None, "int") and not do_regression and pc.all(is_int).as_py():
            return pc.cast(stripped, pa.int64()), "int"
        if want in (None, "int", "float") and pc.all(is_float).as_py():
            floats = pc.cast(stripped, pa.float64())
            if want == "float" or (want is None and do_regression is not False):
                return floats, "float"
            return canonical_labels(floats, kind, where, name, do_regression)  # integral -> classes
        if want in ("int", "float"):
            bad = _first(pc.invert(is_int if want == "int" else is_float))
            kind_text = "an integer" if want == "int" else "a number"
            raise _row_error(where, name, bad, f"label {column[bad].as_py()!r} is not {kind_text}")
        if want is None and do_regression is None and pc.any(is_float).as_py():
            bad = _first(pc.invert(is_float))
            raise _row_error(
                where, name, bad,
                f"label {column[bad].as_py()!r} is not a number, but other labels are; fix the row, or pass "
                "--do_regression false to treat every label as text",
            )  # fmt: skip
        return column, "str"
    if pa.types.is_floating(column.type):
        nan = pc.is_nan(column)
        if pc.any(nan).as_py():
            raise _row_error(where, name, _first(nan), "NaN label")
        integral = pc.all(pc.equal(pc.floor(column), column)).as_py()
        if kind == "int" or (kind is None and do_regression is False and integral):
            if not integral:
                bad = _first(pc.invert(pc.equal(pc.floor(column), column)))
                raise _row_error(where, name, bad, f"label {column[bad].as_py()!r} is not an integer class")
            return pc.cast(column, pa.int64()), "int"
        if kind == "str" or (kind is None and do_regression is False):
            return pc.cast(column, pa.string()), "str"  # non-integral classes keep their text
        return pc.cast(column, pa.float64()), "float"
    if pa.types.is_integer(column.type) or pa.types.is_boolean(column.type):
        if kind == "float" or (kind is None and do_regression):
            return pc.cast(column, pa.float64()), "float"
        if kind == "str":
            raise _row_error(where, name, 0, f"label {column[0].as_py()!r} is a number, the training labels are text")
        return (pc.cast(column, pa.int64()) if pa.types.is_boolean(column.type) else column), "int"
    raise SoupError(f"{where}: column {name!r} holds {column.type} values, not labels")


def encode_labels(task: Task, values, kind: str, where: str, name: str):
    """Canonical label values -> ids (int64), or floats (regression); unknown values are refused."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if task.is_regression:
        if kind != "float":
            raise _row_error(where, name, 0, f"regression label {values[0].as_py()!r} is not a number")
        return pc.cast(values, pa.float32())
    lookup = task.label_lookup()
    keys = [key for key in lookup if isinstance(key, str) == (kind == "str") and not isinstance(key, float)]
    positions = pc.index_in(values, value_set=pa.array(keys, type=values.type)) if keys else None
    if positions is None or positions.null_count:
        bad = 0 if positions is None else _first(positions.is_null())
        known = list(task.label_values or task.label_names)
        raise _row_error(
            where, name, bad, f"label {values[bad].as_py()!r} never appears in the training labels {known}"
        )
    return pc.take(pa.array([lookup[key] for key in keys], type=pa.int64()), positions)


# ----------------------------------------------------------------------------- columns and standard splits


def _text_columns(args: DataArguments, known: Task | None, train: Dataset, where: str) -> list[str]:
    given = _columns_list(args.text_column_names)
    if given:
        if len(given) > MAX_TEXT_FIELDS:
            raise SoupError(
                f"text_column_names: {','.join(given)}: at most {MAX_TEXT_FIELDS} text columns (one text or a pair)"
            )
        return given
    if known is not None:
        return list(known.text_fields)
    others = [c for c in train.column_names if c != args.label_column_name]
    for names in USUAL_TEXT_COLUMNS:  # e.g. (id, text, label): the column everyone calls "text"
        if all(name in others for name in names):
            return list(names)
    texts = [c for c in others if c.strip().lower() not in ID_COLUMNS]
    if 1 <= len(texts) <= MAX_TEXT_FIELDS:
        return texts
    raise SoupError(
        f"{where}: pass --text_column_names (one text column or two for pairs); columns present: {', '.join(others)}"
    )


def _check_columns(dataset: Dataset, columns: list[str], where: str) -> None:
    for column in columns:
        if column not in dataset.column_names:
            raise SoupError(
                f"{where}: missing column {column!r}; columns present: {', '.join(dataset.column_names) or '(none)'}"
            )


def _standard_split(dataset: Dataset, task: Task, text_columns: list[str], label: str, kind: str, where: str):
    """(text fields renamed to the task's, `label` ids or floats, `idx` = row in the source split)."""
    import pyarrow as pa
    from datasets import ClassLabel, DatasetInfo, Features, Value
    from datasets import Dataset as ArrowDataset

    _check_columns(dataset, [*text_columns, label], where)
    if len(dataset) == 0:
        raise SoupError(f"{where}: no rows")
    table = _arrow(dataset)
    values, _ = canonical_labels(table.column(label), kind, where, label, None)
    columns = {}
    for source, target in zip(text_columns, task.text_fields):
        text = table.column(source)  # zero-copy: large datasets stay in their (memory-mapped) Arrow buffers
        if pa.types.is_nested(text.type) or pa.types.is_binary(text.type) or pa.types.is_large_binary(text.type):
            raise SoupError(f"{where}: column {source!r} holds {text.type} values, not text (one string per row)")
        if not pa.types.is_string(text.type):
            text = text.cast(pa.string())
        columns[target] = text.fill_null("") if text.null_count else text
    columns["label"] = encode_labels(task, values, kind, where, label)
    columns["idx"] = pa.array(np.arange(len(dataset), dtype=np.int64))
    label_feature = Value("float32") if task.is_regression else ClassLabel(names=list(task.label_names))
    features = Features({**{name: Value("string") for name in task.text_fields}, "label": label_feature})
    features["idx"] = Value("int64")
    return ArrowDataset(pa.table(columns, schema=features.arrow_schema), info=DatasetInfo(features=features))


def _label_kind_of(dataset: Dataset, label: str, do_regression: bool | None, where: str) -> tuple[str, Any]:
    """Infer (kind, sorted distinct values or None for regression, ClassLabel names or None) from train."""
    from datasets import ClassLabel

    feature = dataset.features.get(label)
    values, kind = canonical_labels(_arrow(dataset).column(label), None, where, label, do_regression)
    if isinstance(feature, ClassLabel) and not do_regression:
        return "int", (tuple(range(feature.num_classes)), tuple(feature.names))
    if kind == "float":
        return kind, None
    distinct = sorted(v for v in values.unique().to_pylist())
    return kind, (tuple(distinct), None)


def _has_labels(dataset: Dataset, label: str) -> bool:
    """False for a split without the label column or whose labels are all missing (-1, as on the Hub)."""
    import pyarrow.compute as pc
    from datasets import ClassLabel

    if label not in dataset.column_names or len(dataset) == 0:
        return False
    column = _arrow(dataset).column(label)
    if column.null_count == len(column):
        return False
    if isinstance(dataset.features[label], ClassLabel):
        return bool(pc.any(pc.not_equal(column, -1)).as_py())
    return True


def _test_sources(
    args: DataArguments, known: Task | None, raw: dict[str, Dataset], label: str
) -> tuple[list[str], list[str]]:
    """(source splits used as test, notes): given, or `test` when labelled, else `validation`, else carve."""
    notes: list[str] = []
    given = _columns_list(args.test_split)
    if given:
        missing = [s for s in given if s != CARVED and s not in raw]
        if missing:
            raise SoupError(f"test_split: no split {missing[0]!r} (splits: {', '.join(raw)})")
        return given, notes
    if known is not None and all(s in raw for s in known.validation_splits):  # CARVED: "train" is there
        return list(known.validation_splits), notes
    candidates = [s for s in ("test", "validation") if s in raw and s != args.heldout_split]
    for split in candidates:
        if _has_labels(raw[split], label):
            if split == "validation" and "test" in raw:
                notes.append("the 'test' split has no labels: the 'validation' split is the test split")
            if split == "test" and "validation" in raw and args.heldout_split != "validation":
                notes.append(
                    "the 'validation' split is not used (pass --heldout_split validation to choose on it "
                    "instead of rows carved from train)"
                )
            return [split], notes
    return [CARVED], notes


def heldout_count(train_size: int, heldout_size: float, minimum: int, maximum: int, what: str = "heldout_size") -> int:
    """Rows to hold out: a count when `heldout_size >= 1`, else a fraction clamped to [minimum, maximum]."""
    if heldout_size <= 0:
        raise SoupError(f"{what} must be positive, got {heldout_size}")
    if heldout_size >= 1:
        count = int(heldout_size)
    else:
        count = min(max(round(train_size * heldout_size), minimum), maximum)
    if count >= train_size:
        raise SoupError(f"{what} {count} is not smaller than the {train_size} training rows")
    return count


def carve_heldout(train_size: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(heldout indices, remaining train indices in seeded-permutation order).

    The remaining order is the permutation's, so `max_train_samples=m` takes a random subset that
    is a prefix of the full set: growing `m` only adds rows, and the held-out set never moves.
    """
    permutation = np.random.default_rng(seed).permutation(train_size)
    return np.sort(permutation[:count]), permutation[count:]


def _digest(dataset: Dataset, columns: list[str], salt: str) -> str:
    digest = hashlib.sha256(salt.encode())
    for batch in dataset.select_columns(columns).iter(batch_size=20_000):
        for name in columns:
            digest.update("\x1f".join(map(str, batch[name])).encode())
            digest.update(b"\x1e")
    return digest.hexdigest()


def content_digest(task: Task, dataset: Dataset) -> str:
    """sha256 of a split's texts and labels: equal for equal content, whatever the source."""
    return _digest(dataset, [*task.text_fields, "label"], task.name)


def _legacy_fingerprint(task: Task, full_train: Dataset, seed: int, count: int) -> str:
    """What format-1 ingredients recorded: hash of (train content, seed, count)."""
    return hashlib.sha256(json.dumps([content_digest(task, full_train), seed, count]).encode()).hexdigest()[:16]


def heldout_fingerprint(task: Task, heldout: Dataset) -> str:
    """Identifies the held-out rows themselves: their source indices, texts and label ids (and names)."""
    salt = json.dumps(["heldout-v2", list(task.label_names)])
    return _digest(heldout, ["idx", *task.text_fields, "label"], salt)[:16]


# ----------------------------------------------------------------------------- the whole load


def _check_request(args: DataArguments) -> None:
    sources = [name for name in ("glue_dir", "dataset_name", "train_file") if getattr(args, name)]
    if len(sources) > 1:
        raise SoupError(f"give one data source, not {' and '.join('--' + s for s in sources)}")
    if not sources and not args.task:
        raise SoupError(
            "no data given: pass --train_file FILE (csv, tsv, json, parquet), --dataset_name HUB_ID, "
            "or --task with a GLUE preset"
        )
    for name in ("validation_file", "test_file", "heldout_file"):
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


# File and folder names that name a split or say nothing, not a task: `tickets/data/train.csv` is "tickets".
GENERIC_FILE_STEMS = frozenset({"train", "training", "data", "dataset", "all", "full", "labelled", "labeled"})


def _task_name(args: DataArguments) -> str:
    """A user's task is named after its data: `--task_name`, else the dataset id's last part (+ config),
    else the train file's stem, or the nearest folder's name when the stem only names a split
    (`tickets/data/train.csv` is "tickets")."""
    if args.task_name:
        return task_name_from(args.task_name)
    if args.dataset_name:
        base = Path(args.dataset_name.rstrip("/")).name
        return task_name_from(base + (f"_{args.dataset_config_name}" if args.dataset_config_name else ""))
    path = Path(args.train_file).resolve()
    stem = task_name_from(path.name.split(".")[0])
    folders = [task_name_from(folder) for folder in reversed(path.parent.parts[1:])]
    named = [name for name in [stem, *folders] if name not in GENERIC_FILE_STEMS]
    return named[0] if named else stem


def _source_label(origin: dict[str, Any]) -> str:
    if origin["kind"] == "glue_dir":
        return f"local:{origin['path']}"
    if origin["kind"] == "hub":
        name = origin["dataset_name"] + (f"/{origin['config']}" if origin.get("config") else "")
        return f"hub:{name}" + (f"@{origin['revision']}" if origin.get("revision") else "")
    if origin["kind"] == "folder":
        return f"folder:{origin['path']}"
    return "files:" + ",".join(f["path"] for f in origin["files"].values())


def check_origin(recorded: dict[str, Any], actual: dict[str, Any]) -> None:
    """The data found now must be the bytes the ingredients were trained on (sha256 / Hub commit)."""
    if recorded.get("kind") != actual.get("kind"):
        return  # repointed to another kind of source (a local copy of a Hub dataset): the fingerprint decides
    for split, then in (recorded.get("files") or {}).items():
        now = (actual.get("files") or {}).get(split)
        if now is not None and now["sha256"] != then.get("sha256"):
            raise SoupError(
                f"{now['path']}: sha256 {now['sha256'][:12]}… differs from the {split} file the ingredients were "
                f"trained on ({then.get('path')}, sha256 {str(then.get('sha256'))[:12]}…); pass that file"
            )
    if recorded.get("sha256") and actual.get("sha256") and recorded["sha256"] != actual["sha256"]:
        raise SoupError(
            f"{actual.get('path')}: content sha256 differs from the dataset folder the ingredients were trained on "
            f"({recorded.get('path')})"
        )
    if recorded.get("revision") and actual.get("revision") and recorded["revision"] != actual["revision"]:
        raise SoupError(
            f"dataset_name {actual.get('dataset_name')}: resolved to commit {actual['revision']}, the ingredients were "
            f"trained on {recorded['revision']}"
        )


def _tsv_quoting_notes(raw: dict[str, Dataset], where: dict[str, str], text_columns: list[str], quoting: str):
    if quoting != "none":
        return []
    notes = []
    for split, dataset in raw.items():
        if not where[split].lower().removesuffix(".gz").endswith(".tsv") or not len(dataset):
            continue
        sample = [str(v) for c in text_columns if c in dataset.column_names for v in dataset[:200][c]]
        quoted = sum(1 for v in sample if len(v) > 1 and v.startswith('"') and v.endswith('"'))
        if sample and quoted > len(sample) / 2:
            notes.append(
                f"{where[split]}: most text fields are wrapped in double quotes, which a TSV is read with "
                "(--tsv_quoting none: quotes are text); pass --tsv_quoting csv if the file uses CSV-style quoting"
            )
    return notes


def load_splits(
    args: DataArguments, *, task: Task | None = None, expected_origin: dict[str, Any] | None = None
) -> TaskSplits:
    """Load, check and split the data `args` describes (module docstring).

    `task`: a recorded description (what an ingredient was trained on): labels are encoded with
    its label names and values instead of being inferred again, so ids never shift.
    `expected_origin`: the recorded `source`; the bytes found now must match it.
    """
    from datasets import DatasetDict

    _check_request(args)
    preset = get_task(args.task) if args.task else None
    known = task or preset
    label = args.label_column_name
    if args.glue_dir:
        if known is None or known.tsv is None:
            raise SoupError("glue_dir: pass --task with the GLUE preset to read from it")
        raw, where, origin = _load_glue_dir(known, args.glue_dir)
        label = "label"
        text_columns = list(known.text_fields)
    else:
        if args.train_file:
            raw, where, origin = _load_files(args)
        elif args.dataset_name:
            raw, where, origin = _load_dataset_name(args.dataset_name, args.dataset_config_name, args.dataset_revision)
        else:  # a preset from the Hub
            raw, where, origin = _load_dataset_name(HUB_DATASET, preset.name, args.dataset_revision)
        if "train" not in raw:
            raise SoupError(f"{next(iter(where.values()), 'dataset')}: no 'train' split (splits: {', '.join(raw)})")
        _check_columns(raw["train"], [label], where["train"])
        text_columns = _text_columns(args, known, raw["train"], where["train"])
        _check_columns(raw["train"], text_columns, where["train"])
        if known is not None and len(text_columns) != len(known.text_fields):
            raise SoupError(
                f"text_column_names: {','.join(text_columns)}: task {known.name} reads "
                f"{len(known.text_fields)} text column(s) ({', '.join(known.text_fields)})"
            )
        if label in text_columns:
            raise SoupError(f"text_column_names: {label!r} is the label column")
    if expected_origin:
        check_origin(expected_origin, origin)
    if args.heldout_split and args.heldout_split not in raw:
        raise SoupError(f"heldout_split: no split {args.heldout_split!r} (splits: {', '.join(raw)})")
    heldout_source = args.heldout_split or ("heldout" if args.heldout_file else None)
    notes = _tsv_quoting_notes(raw, where, text_columns, args.tsv_quoting)

    for split, flag in (("test", "test_file"), ("validation", "validation_file")):
        if getattr(args, flag) and label not in raw[split].column_names:  # never silently replaced by a carve
            raise SoupError(
                f"{where[split]}: no label column {label!r} (--{flag} must be labelled; columns present: "
                f"{', '.join(raw[split].column_names) or '(none)'})"
            )
    # The task: recorded > preset > inferred from the training labels.
    test_sources, test_notes = _test_sources(args, known, raw, label)
    notes += test_notes
    if heldout_source in test_sources:
        raise SoupError(f"heldout_split: {heldout_source!r} is also a test split; nothing may be chosen on test")
    regression = known.is_regression if known is not None else args.do_regression
    kind, inferred = _label_kind_of(raw["train"], label, regression, where["train"])
    if known is not None:
        the_task = known if tuple(test_sources) == known.validation_splits else known.with_test_splits(test_sources)
        feature_names = inferred[1] if inferred else None
        if feature_names and tuple(feature_names) != known.label_names:
            raise SoupError(
                f"{where['train']}: column {label!r} has ClassLabel names {list(feature_names)}, the task's labels "
                f"are {list(known.label_names)}"
            )
    else:
        values, names = inferred if inferred else (None, None)
        the_task = make_task(
            _task_name(args), text_columns, values, metrics=_metric_list(args.metric_name) or None,
            test_splits=test_sources, label_names=names,
        )  # fmt: skip

    # Standard splits: the task's text fields, `label` ids (or floats), `idx`.
    def standard(split: str):
        return _standard_split(raw[split], the_task, text_columns, label, kind, where[split])

    full_train = standard("train")
    pool = np.arange(len(full_train))
    legacy = None
    splits = DatasetDict()
    tests: dict[str, Any] = {}
    for position, source in enumerate(test_sources):
        name = test_split_name(position, source)
        if source == CARVED:
            count = heldout_count(len(full_train), args.test_split_size, 100, 5000, what="test_split_size")
            test_idx, pool = carve_heldout(len(full_train), count, CARVED_TEST_SEED)
            pool = np.sort(pool)
            dataset = full_train.select(test_idx)
            tests[name] = {"from": CARVED, "carved": True, "seed": CARVED_TEST_SEED, "size_arg": args.test_split_size}
            notes.append(
                f"{where['train']}: no labelled test or validation split, so {count} rows "
                f"({count / len(full_train):.0%}) were carved from train as the test split (seed {CARVED_TEST_SEED}); "
                "reported, never used to choose"
            )
        else:
            dataset = standard(source)
            tests[name] = {"from": source, "where": where[source]}
        if args.max_test_samples is not None and args.max_test_samples < len(dataset):
            # A seeded subset, not the first rows: a file sorted by label would give one class.
            order = np.random.default_rng(TEST_SUBSAMPLE_SEED).permutation(len(dataset))
            dataset = dataset.select(np.sort(order[: args.max_test_samples]))
            tests[name]["subsample_seed"] = TEST_SUBSAMPLE_SEED
        tests[name]["size"] = len(dataset)
        splits[name] = dataset

    if heldout_source:
        heldout = standard(heldout_source)
        train_order = np.random.default_rng(args.heldout_seed).permutation(pool)
        heldout_info: dict[str, Any] = {"from": "file" if args.heldout_file else "split", "split": heldout_source}
        heldout_info["where"] = where[heldout_source]
    else:
        count = heldout_count(len(pool), args.heldout_size, args.heldout_min, args.heldout_max)
        positions, order = carve_heldout(len(pool), count, args.heldout_seed)
        heldout = full_train.select(pool[positions])
        train_order = pool[order]
        heldout_info = {"from": "train", "seed": args.heldout_seed, "size_arg": args.heldout_size}
        heldout_info.update(min=args.heldout_min, max=args.heldout_max)
        if the_task.is_preset and len(pool) == len(full_train):
            legacy = functools.partial(_legacy_fingerprint, the_task, full_train, args.heldout_seed, count)

    if args.max_train_samples is not None:
        train_order = train_order[: args.max_train_samples]
    splits["train"] = full_train.select(np.sort(train_order))
    splits["heldout"] = heldout
    splits = DatasetDict({name: splits[name] for name in ("train", "heldout", *the_task.test_split_names)})

    arguments = asdict(args)
    for name in ("train_file", "validation_file", "test_file", "heldout_file", "glue_dir"):
        if arguments[name]:
            arguments[name] = str(Path(arguments[name]).expanduser().resolve())
    if args.dataset_name and Path(args.dataset_name).expanduser().is_dir():
        arguments["dataset_name"] = str(Path(args.dataset_name).expanduser().resolve())
    if origin["kind"] == "hub":
        arguments["dataset_revision"] = origin.get("revision") or args.dataset_revision
    arguments["metric_name"] = _metric_list(args.metric_name) or None
    arguments["text_column_names"] = ",".join(text_columns)
    return TaskSplits(
        task=the_task,
        splits=splits,
        source=_source_label(origin),
        fingerprint=heldout_fingerprint(the_task, heldout),
        heldout_seed=args.heldout_seed,
        max_train_samples=args.max_train_samples,
        max_test_samples=args.max_test_samples,
        origin=origin,
        arguments=arguments,
        heldout=heldout_info,
        tests=tests,
        notes=notes,
        legacy=legacy,
        full_train=full_train,
    )


load_glue = load_splits  # the historical name


def arguments_from_description(description: dict[str, Any], where: str = "data") -> DataArguments:
    """The DataArguments a recorded `data` block was made with (unknown keys ignored)."""
    recorded = description.get("arguments")
    if not isinstance(recorded, dict):
        raise SoupError(f"{where}: field 'data.arguments' is missing")
    known = {f.name for f in fields(DataArguments)}
    return DataArguments(**{k: v for k, v in recorded.items() if k in known})


# ----------------------------------------------------------------------------- the merge's data


@dataclass
class HeldoutCheck:
    """Can we show that the held-out rows a merge chooses on were not training rows of its ingredients?"""

    disjoint: bool
    reason: str


# Flags a merge may give beside a recorded data description (everything else comes from the record).
MERGE_OVERRIDES = (*LOCATION_FIELDS, "heldout_split", "max_test_samples", "max_seq_length", "task")


def _given(flags: DataArguments) -> dict[str, Any]:
    """The DataArguments fields set to something else than their default (what the user typed).

    None is never typed: it is a subclass's "not given" default (the merge's `max_seq_length`), and
    taking it as given would overwrite what the ingredients recorded."""
    defaults = DataArguments()
    return {
        f.name: getattr(flags, f.name)
        for f in fields(DataArguments)
        if getattr(flags, f.name) is not None and getattr(flags, f.name) != getattr(defaults, f.name)
    }


def _text_keys(dataset: Dataset, task: Task) -> set[int]:
    keys: set[int] = set()
    for batch in dataset.select_columns(list(task.text_fields)).iter(batch_size=20_000):
        keys.update(hash(texts) for texts in zip(*(batch[name] for name in task.text_fields)))
    return keys


def overlap_with_train(splits: TaskSplits) -> int:
    """Held-out rows whose text(s) also occur in the source's train split (exact match)."""
    train = _text_keys(splits.full_train if splits.full_train is not None else splits["train"], splits.task)
    heldout = splits["heldout"].select_columns(list(splits.task.text_fields))
    return sum(hash(texts) in train for texts in zip(*(heldout[name] for name in splits.task.text_fields)))


def load_recorded(record: dict[str, Any] | None, flags: DataArguments, where: str) -> tuple[TaskSplits, HeldoutCheck]:
    """The splits a merge scores on: rebuilt from an ingredient's record, or from flags for plain folders.

    * a `data` block (this version's sweep, or `IngredientExportCallback(splits=...)`): everything
      comes from it; the flags may only repoint files (`LOCATION_FIELDS`; sha256 must match), choose
      an explicit held-out (`--heldout_file`, `--heldout_split`), subsample test or set the length;
    * a format-1 record (task name + `split.source` "local:…" / "hub:…"): the preset, its source and
      held-out carve, checked against the recorded fingerprint;
    * no record (plain model folders): the flags describe the data.
    `HeldoutCheck` says whether the held-out rows are provably not training rows (module docstring).
    """
    record = record or {}
    given = _given(flags)
    data = record.get("data")
    split = record.get("split") or {}
    recorded_fingerprint = split.get("fingerprint") or (data or {}).get("heldout", {}).get("fingerprint")
    explicit_heldout = bool(flags.heldout_file or flags.heldout_split)
    if isinstance(data, dict):
        refused = sorted(set(given) - set(MERGE_OVERRIDES))
        if refused:
            raise SoupError(
                f"--{refused[0]}: the ingredients record their data ({where}); a merge may only point at moved "
                "files (--train_file, --dataset_name, ...) or choose another held-out (--heldout_file, --heldout_split)"
            )
        task = Task.from_dict(data.get("task") or {}, f"{where}: data.task")
        if flags.task and get_task(flags.task).name != task.name:
            raise SoupError(f"--task {flags.task}: the ingredients were fine-tuned on {task.name!r}")
        args = arguments_from_description(data, where)
        for name in MERGE_OVERRIDES:
            if name in given and name != "task":
                setattr(args, name, given[name])
        if flags.heldout_file or flags.heldout_split:  # one explicit held-out replaces the recorded one
            args.heldout_file, args.heldout_split = flags.heldout_file, flags.heldout_split
            if flags.heldout_file and not args.train_file:
                raise SoupError("--heldout_file: the ingredients' data is a dataset; use --heldout_split NAME")
        _check_recorded_paths(args, data.get("source") or {})
        splits = load_splits(args, task=task, expected_origin=data.get("source"))
    elif record.get("task") in PRESETS:
        args = DataArguments(**{**asdict(DataArguments()), **given})
        args.task = record["task"]
        if flags.task and get_task(flags.task).name != get_task(record["task"]).name:
            raise SoupError(f"--task {flags.task}: the ingredients were fine-tuned on {record['task']!r}")
        source = str(split.get("source") or "")
        if not args.glue_dir and not args.dataset_name and not args.train_file and source.startswith("local:"):
            args.glue_dir = source.removeprefix("local:")
        if args.dataset_revision is None and source.startswith("hub:") and "@" in source:
            args.dataset_revision = source.split("@", 1)[1]
        for name in ("heldout_seed", "heldout_size"):
            if split.get(name) is not None and name not in given:
                setattr(args, name, split[name])
        if "max_test_samples" not in given and split.get("max_test_samples") is not None:
            args.max_test_samples = split["max_test_samples"]
        splits = load_splits(args)
    else:
        if not (flags.task or flags.dataset_name or flags.train_file):
            missing = "no ingredient.json" if not record else "ingredient.json records no data description"
            raise SoupError(
                f"{where}: {missing}, so the data is unknown; pass what the models were fine-tuned on "
                "(--task PRESET [--glue_dir], --dataset_name ID or --train_file FILE) to score them, or --skip_scoring"
            )
        args = DataArguments(**{**asdict(DataArguments()), **given})
        splits = load_splits(args)
        recorded_fingerprint = None
    check = recorded_fingerprint and not explicit_heldout and recorded_fingerprint != splits.fingerprint
    if check and recorded_fingerprint != splits.legacy_fingerprint():  # format-1 records: the old formula
        raise SoupError(
            f"{where}: held-out fingerprint {recorded_fingerprint} does not match the held-out split rebuilt from "
            f"{splits.source} ({splits.fingerprint}); pass the data the sweep used"
        )
    return splits, heldout_check(splits, record, recorded_fingerprint, explicit_heldout)


_FILE_FLAGS = {"train": "train_file", "validation": "validation_file", "test": "test_file", "heldout": "heldout_file"}


def _check_recorded_paths(args: DataArguments, source: dict[str, Any]) -> None:
    """A recorded file or folder that is gone: say which flag points at its new place (sha256 must match)."""
    for split, recorded in (source.get("files") or {}).items() if source.get("kind") == "files" else ():
        flag = _FILE_FLAGS[split]
        path = getattr(args, flag)
        if path and not Path(path).exists():
            raise SoupError(
                f"{path}: not found; the ingredients were trained on this {split} file: if it moved, pass --{flag} "
                f"NEW_PATH (its sha256 must be {str(recorded.get('sha256'))[:12]}…)"
            )
    if source.get("kind") == "folder" and args.dataset_name and not Path(args.dataset_name).exists():
        raise SoupError(
            f"{args.dataset_name}: not found; the ingredients were trained on this dataset folder: if it moved, "
            "pass --dataset_name NEW_PATH"
        )
    if source.get("kind") == "glue_dir" and args.glue_dir and not Path(args.glue_dir).is_dir():
        raise SoupError(
            f"{args.glue_dir}: not found; the ingredients were trained on this GLUE folder: if it moved, "
            "pass --glue_dir NEW_PATH"
        )


def heldout_check(splits: TaskSplits, record: dict[str, Any], fingerprint: str | None, explicit: bool) -> HeldoutCheck:
    """Whether the merge can show its held-out rows were not training rows of the ingredients (issue: a
    plain folder may have trained on anything, so carving 10 % of train for it proves nothing)."""
    size = len(splits["heldout"])
    if not record:
        how = (
            f"given by --heldout_{'file' if splits.heldout.get('from') == 'file' else 'split'}"
            if explicit
            else ("carved from the train split")
        )
        return HeldoutCheck(
            False,
            f"the ingredients are plain model folders (no ingredient.json), so what they were trained on is unknown; "
            f"the {size} held-out rows ({how}) may be training data"
            + ("" if explicit else ": pass --heldout_file or --heldout_split with rows they did not see"),
        )
    if not fingerprint:
        return HeldoutCheck(
            False,
            f"ingredient.json records no held-out split (IngredientExportCallback without splits=), so the {size} "
            "held-out rows may be training data",
        )
    carved = splits.heldout.get("from") == "train"
    if carved and not explicit:
        return HeldoutCheck(
            True, f"the {size} held-out rows the ingredients recorded (fingerprint {fingerprint}), carved from train "
            "before fine-tuning",
        )  # fmt: skip
    overlap = overlap_with_train(splits)
    if overlap:
        return HeldoutCheck(False, f"{overlap} of the {size} held-out rows also appear in the training split")
    return HeldoutCheck(
        True, f"the {size} held-out rows ({splits.heldout.get('where')}) are a split of their own; none of them "
        "appears in the training split",
    )  # fmt: skip


# ----------------------------------------------------------------------------- tokenisation


def default_cache_dir() -> Path:
    """`$HF_SOUP_CACHE`, else `$HF_HOME/hf_soup` (next to the user's other Hugging Face caches)."""
    if os.environ.get("HF_SOUP_CACHE"):
        return Path(os.environ["HF_SOUP_CACHE"])
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "hf_soup"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Identifies what a tokenizer does (its full serialised pipeline when it is a fast tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        pipeline = json.loads(backend.to_str())
        # Truncation/padding are per-call runtime state (set by the last call), not what it does.
        pipeline.pop("truncation", None)
        pipeline.pop("padding", None)
        state = json.dumps(pipeline, sort_keys=True)
    else:
        state = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(f"{type(tokenizer).__name__}|{state}".encode()).hexdigest()[:16]


def default_text_encoder(task: Task, tokenizer: Any, max_length: int):
    """Batch encoder for encoder classifiers: single sentence or pair, truncated, unpadded."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[name] for name in task.text_fields]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    return encode


def tokenize_splits(
    splits: TaskSplits,
    tokenizer: Any,
    max_length: int,
    *,
    encoder_name: str = "classification",
    encoder: Any = None,
    cache_dir: str | os.PathLike | None = None,
) -> DatasetDict:
    """Tokenise every split once (no padding: batches pad dynamically) and cache on disk.

    The cache key is (tokenizer, max_length, the data's identity: task description, source bytes,
    split arguments, which splits, encoder name), so a grid of N runs, the merge and the benchmarks
    all reuse one tokenisation, and different data never collides. Pass `encoder` (a batched map
    function) with a distinct `encoder_name` for other input formats, e.g. T5 text-to-text. Each
    example also gets `length` (tokens) for length-grouped batches.
    """
    key_parts = [
        TOKENIZE_CACHE_VERSION,
        tokenizer_fingerprint(tokenizer),
        max_length,
        splits.identity,
        sorted(splits.splits),
        encoder_name,
    ]
    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:20]
    target = Path(cache_dir or default_cache_dir()) / "tokenized" / f"{splits.task.name}-{key}"
    if (target / "dataset_dict.json").is_file():
        try:
            from datasets import load_from_disk

            return load_from_disk(str(target))
        except Exception:  # a cache from an incompatible datasets version: rebuild below
            pass
    encoder = encoder or default_text_encoder(splits.task, tokenizer, max_length)

    def with_length(batch: dict[str, list]) -> dict[str, list]:
        encoded = dict(encoder(batch))
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    drop = list(splits.task.text_fields)
    with quiet_datasets():  # sub-second for the sizes a soup uses: no bars
        tokenized = splits.splits.map(with_length, batched=True, remove_columns=drop, desc="tokenizing")
    try:
        with atomic_dir(target, overwrite=True) as tmp, quiet_datasets():
            tokenized.save_to_disk(str(tmp))
    except SoupError:  # a read-only or full cache is not fatal: we still have the data in memory
        return tokenized
    from datasets import load_from_disk

    return load_from_disk(str(target))


# ----------------------------------------------------------------------------- CLI


def summary_lines(splits: TaskSplits) -> list[str]:
    """What `python -m hf_soup.data` (and the sweep) print about the loaded data."""
    task = splits.task
    kind = "regression" if task.is_regression else f"{task.num_labels} classes"
    lines = [
        f"task {task.name} ({kind}; text {', '.join(task.text_fields)}; metrics {', '.join(task.metrics)}, "
        f"primary {task.primary_metric}) from {splits.source}; held-out fingerprint {splits.fingerprint}"
    ]
    for name, dataset in splits.splits.items():
        labels = np.asarray(dataset.with_format("numpy")["label"])
        if task.is_regression:
            summary = f"mean label {labels.mean():.3f}"
        else:
            counts = np.bincount(labels, minlength=task.num_labels)
            summary = ", ".join(f"{label} {count}" for label, count in zip(task.label_names, counts))
        lines.append(f"  {name:16s} {len(dataset):7d} rows  ({summary})")
    lines += [f"note: {note}" for note in splits.notes]
    return lines


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(DataArguments, formatter_class=DefaultsHelpFormatter)

    def one_line_error(message: str) -> None:
        raise SoupError(message)

    parser.error = one_line_error
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    print("\n".join(summary_lines(load_splits(args))))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
