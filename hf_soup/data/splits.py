"""The whole load: test and held-out carved (or taken) once, fingerprinted, described (`TaskSplits`)."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_soup.data.arguments import LOCATION_FIELDS, DataArguments, _check_request, _columns_list, _metric_list
from hf_soup.data.files import (
    _load_dataset_name,
    _load_files,
    _load_glue_dir,
    _source_label,
    check_origin,
    file_stem,
    load_data_file,
)
from hf_soup.data.labels import _check_columns, _has_labels, _label_kind_of, _standard_split, _text_columns
from hf_soup.errors import SoupError
from hf_soup.tasks import HUB_DATASET, Task, get_task, make_task, task_name_from, task_name_from_data, test_split_name

if TYPE_CHECKING:  # imported where used: `python -m hf_soup.merge --skip_scoring` never loads datasets
    from datasets import Dataset, DatasetDict


# The test split carved from train when a dataset has none: fixed, so every run gets the same one.
CARVED_TEST_SEED = 20_261_123


TEST_SUBSAMPLE_SEED = 0  # --max_test_samples: which rows a subsampled test split keeps


CARVED = "train"  # a task's `validation_splits` when its test split was carved from train
# A class with fewer training rows than this share is named in a warning: it is often noise (SNLI's
# "-", no annotator agreement) that the user did not mean to learn as a class of its own.
RARE_CLASS_SHARE = 0.02


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
    warnings: list[str] = field(default_factory=list)  # what the user should act on (rare classes)
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


# File and folder names that name a split or say nothing, not a task: `tickets/data/train.csv` is "tickets".
GENERIC_FILE_STEMS = frozenset({"train", "training", "data", "dataset", "all", "full", "labelled", "labeled"})


def _task_name(args: DataArguments) -> str:
    """A user's task is named after its data: `--task_name`, else the dataset id's last part (+ config),
    else the train file's name, or the nearest folder's name when the file's only names a split
    (`tickets/data/train.csv` is "tickets"). One rule names both (`tasks.task_name_from_data`): split
    words and release numbers are not the task (`snli_1.0_dev.jsonl` is "snli")."""
    if args.task_name:
        return task_name_from(args.task_name)
    if args.dataset_name:
        base = Path(args.dataset_name.rstrip("/")).name
        return task_name_from_data(base + (f"_{args.dataset_config_name}" if args.dataset_config_name else ""))
    path = Path(args.train_file).resolve()
    stem = task_name_from_data(file_stem(path))
    folders = [task_name_from_data(folder) for folder in reversed(path.parent.parts[1:])]
    named = [name for name in [stem, *folders] if name not in GENERIC_FILE_STEMS]
    return named[0] if named else stem


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


def rare_class_warnings(task: Task, train: Dataset, where: str) -> list[str]:
    """One line per class holding under `RARE_CLASS_SHARE` of the training rows, naming it and its share."""
    if task.is_regression or not len(train):
        return []
    counts = np.bincount(np.asarray(train.with_format("numpy")["label"]), minlength=task.num_labels)
    return [
        f"{where}: label {name!r} has {count} of {len(train)} training rows ({count / len(train):.1%}); a class "
        "this rare is barely learned: if it is noise, drop or relabel its rows"
        for name, count in zip(task.label_names, counts)
        if count / len(train) < RARE_CLASS_SHARE
    ]


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
            try:
                raw, where, origin = _load_dataset_name(HUB_DATASET, preset.name, args.dataset_revision)
            except SoupError as err:
                raise SoupError(
                    f"task {preset.name}: {err}; without the Hub, pass --glue_dir DIR (GLUE's TSV folders) or "
                    "--train_file FILE"
                ) from None
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
    own_labels = set()  # splits whose labels may be written otherwise than train's (ids or names)
    if args.heldout_file and "heldout" not in raw:  # beside a preset, a GLUE folder or a dataset
        raw["heldout"] = load_data_file(args.heldout_file, args.tsv_quoting)
        where["heldout"] = str(Path(args.heldout_file).expanduser())
        own_labels.add("heldout")
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
        split_kind = kind
        if split in own_labels:  # e.g. GLUE's TSVs hold ids, the user's held-out file "positive"/"negative"
            _check_columns(raw[split], [*text_columns, label], where[split])
            split_kind = _label_kind_of(raw[split], label, the_task.is_regression, where[split])[0]
        return _standard_split(raw[split], the_task, text_columns, label, split_kind, where[split])

    full_train = standard("train")
    warnings = rare_class_warnings(the_task, full_train, where["train"])
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
        warnings=warnings,
        legacy=legacy,
        full_train=full_train,
    )


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
    lines += [f"warning: {warning}" for warning in splits.warnings]
    return lines
