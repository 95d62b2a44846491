"""Load a GLUE task (Hub or local TSV folder), carve the held-out split, tokenise once and cache.

    python -m hf_soup.data --task rte --glue_dir ../shared/glue      # inspect splits + fingerprint

Three splits come back, for every task:
  * `train`   — GLUE train minus the held-out rows (optionally subsampled by `max_train_samples`);
  * `heldout` — carved from GLUE train with a fixed seed: what greedy soup and every other choice
                uses. Size: `heldout_size` (a fraction of train, or a count when >= 1), clamped to
                [`heldout_min`, `heldout_max`] (defaults 10 %, at least 100, at most 2,000 rows);
  * `test`    — GLUE's dev set (GLUE's test has no labels). Reported, never used to choose.
                MNLI adds `test_mismatched`.
The held-out rows depend only on (train content, seed, size), so every run of a sweep, on any
process or machine, gets the same split; `GlueSplits.fingerprint` identifies it and is written to
every ingredient so the merge can refuse ingredients scored on different held-out sets.
`max_train_samples` never changes the held-out split.

Local folders use GLUE's original layout (`download_glue_data.py`): parsed with csv.QUOTE_NONE
(the texts contain unbalanced quotes; default quoting silently merges rows), CoLA without header,
MRPC's header with a BOM, RTE/QNLI/MNLI string labels mapped to the Hub's ids.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_soup.atomic import atomic_dir
from hf_soup.errors import SoupError, cli_main
from hf_soup.tasks import HUB_DATASET, Task, get_task

if TYPE_CHECKING:  # imported where used: `python -m hf_soup.merge --skip_scoring` never loads datasets
    from datasets import Dataset, DatasetDict

csv.field_size_limit(sys.maxsize)

# Bump when tokenised features change shape, so old caches are not reused.
TOKENIZE_CACHE_VERSION = 1


@dataclass
class DataArguments:
    """Which task and how to split it. Field names double as CLI flags (HfArgumentParser)."""

    task: str = field(default="rte", metadata={"help": "GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli"})
    glue_dir: str | None = field(
        default=None, metadata={"help": "local folder in GLUE's original TSV layout; default: the Hub's nyu-mll/glue"}
    )
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub revision of nyu-mll/glue"})
    heldout_size: float = field(
        default=0.1, metadata={"help": "held-out rows carved from train: fraction (<1) or count"}
    )
    heldout_min: int = field(default=100, metadata={"help": "floor on the held-out size when a fraction is given"})
    heldout_max: int = field(default=2000, metadata={"help": "cap on the held-out size when a fraction is given"})
    heldout_seed: int = field(default=0, metadata={"help": "seed of the held-out carve (keep fixed across a sweep)"})
    max_train_samples: int | None = field(default=None, metadata={"help": "subsample train (after carving)"})
    max_test_samples: int | None = field(default=None, metadata={"help": "subsample test (GLUE dev) for quick runs"})
    max_seq_length: int = field(default=128, metadata={"help": "truncate tokenised inputs to this many tokens"})


@dataclass
class GlueSplits:
    """train / heldout / test (+ test_mismatched) as `datasets.Dataset`s, and how they were made."""

    task: Task
    splits: DatasetDict
    source: str
    fingerprint: str
    heldout_seed: int
    max_train_samples: int | None = None
    max_test_samples: int | None = None

    def __getitem__(self, name: str) -> Dataset:
        return self.splits[name]

    def describe(self) -> dict[str, Any]:
        """The `split` block of ingredient.json / soup.json."""
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "heldout_seed": self.heldout_seed,
            "heldout_size": len(self.splits["heldout"]),
            "train_size": len(self.splits["train"]),
            "test_size": len(self.splits["test"]),
            "max_train_samples": self.max_train_samples,
            "max_test_samples": self.max_test_samples,
        }


# ----------------------------------------------------------------------------- local TSV folder


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


def _load_local(task: Task, glue_dir: str) -> tuple[dict[str, Dataset], str]:
    from datasets import Dataset

    root = Path(glue_dir)
    if not root.is_dir():
        raise SoupError(f"{root}: GLUE folder does not exist")
    folder = root / task.tsv.folder
    if not folder.is_dir():
        raise SoupError(f"{folder}: missing task folder for {task.name!r} in {root}")
    raw = {"train": read_glue_tsv(task, folder / task.tsv.train_file)}
    for split, filename in zip(task.test_split_names, task.tsv.dev_files):
        raw[split] = read_glue_tsv(task, folder / filename)
    return {
        name: Dataset.from_dict(cols, features=_features(task)) for name, cols in raw.items()
    }, f"local:{root.resolve()}"


# ----------------------------------------------------------------------------- the Hub


def _load_hub(task: Task, revision: str | None) -> tuple[dict[str, Dataset], str]:
    from datasets import load_dataset

    try:
        hub = load_dataset(HUB_DATASET, task.name, revision=revision)
    except Exception as err:  # offline, unknown revision, ...: one line, not a traceback
        raise SoupError(
            f"could not load {HUB_DATASET}/{task.name} from the Hub ({type(err).__name__}: {err}); "
            "offline? pass --glue_dir with a local GLUE folder"
        ) from err
    keep = [*task.text_fields, "label", "idx"]
    out = {"train": hub["train"]}
    for ours, theirs in zip(task.test_split_names, task.validation_splits):
        out[ours] = hub[theirs]
    out = {name: ds.select_columns(keep).cast(_features(task)) for name, ds in out.items()}
    return out, f"hub:{HUB_DATASET}" + (f"@{revision}" if revision else "")


# ----------------------------------------------------------------------------- splitting


def _features(task: Task):
    from datasets import ClassLabel, Features, Value

    label = Value("float32") if task.is_regression else ClassLabel(names=list(task.label_names))
    return Features({**{name: Value("string") for name in task.text_fields}, "label": label, "idx": Value("int32")})


def content_digest(task: Task, dataset: Dataset) -> str:
    """sha256 of a split's texts and labels: equal for equal content, whatever the source."""
    digest = hashlib.sha256(task.name.encode())
    for batch in dataset.select_columns([*task.text_fields, "label"]).iter(batch_size=20_000):
        for name in (*task.text_fields, "label"):
            digest.update("\x1f".join(map(str, batch[name])).encode())
            digest.update(b"\x1e")
    return digest.hexdigest()


def heldout_count(train_size: int, heldout_size: float, minimum: int, maximum: int) -> int:
    """Rows to hold out: a count when `heldout_size >= 1`, else a fraction clamped to [minimum, maximum]."""
    if heldout_size <= 0:
        raise SoupError(f"heldout_size must be positive, got {heldout_size}")
    if heldout_size >= 1:
        count = int(heldout_size)
    else:
        count = min(max(round(train_size * heldout_size), minimum), maximum)
    if count >= train_size:
        raise SoupError(f"heldout_size {count} is not smaller than the {train_size} training rows")
    return count


def carve_heldout(train_size: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(heldout indices, remaining train indices in seeded-permutation order).

    The remaining order is the permutation's, so `max_train_samples=m` takes a random subset that
    is a prefix of the full set: growing `m` only adds rows, and the held-out set never moves.
    """
    permutation = np.random.default_rng(seed).permutation(train_size)
    return np.sort(permutation[:count]), permutation[count:]


def load_glue(args: DataArguments) -> GlueSplits:
    """Load `args.task` from `args.glue_dir` (or the Hub) and return train / heldout / test."""
    from datasets import DatasetDict

    task = get_task(args.task)
    raw, source = _load_local(task, args.glue_dir) if args.glue_dir else _load_hub(task, args.dataset_revision)
    full_train = raw.pop("train")
    count = heldout_count(len(full_train), args.heldout_size, args.heldout_min, args.heldout_max)
    heldout_idx, train_order = carve_heldout(len(full_train), count, args.heldout_seed)
    if args.max_train_samples is not None:
        if args.max_train_samples <= 0:
            raise SoupError(f"max_train_samples must be positive, got {args.max_train_samples}")
        train_order = train_order[: args.max_train_samples]
    fingerprint = hashlib.sha256(
        json.dumps([content_digest(task, full_train), args.heldout_seed, count]).encode()
    ).hexdigest()[:16]
    splits = DatasetDict(train=full_train.select(np.sort(train_order)), heldout=full_train.select(heldout_idx))
    for name, dataset in raw.items():
        if args.max_test_samples is not None and args.max_test_samples < len(dataset):
            dataset = dataset.select(range(args.max_test_samples))
        splits[name] = dataset
    return GlueSplits(
        task, splits, source, fingerprint, args.heldout_seed, args.max_train_samples, args.max_test_samples
    )


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
    splits: GlueSplits,
    tokenizer: Any,
    max_length: int,
    *,
    encoder_name: str = "classification",
    encoder: Any = None,
    cache_dir: str | os.PathLike | None = None,
) -> DatasetDict:
    """Tokenise every split once (no padding: batches pad dynamically) and cache on disk.

    The cache key is (tokenizer, max_length, task, split fingerprint, subsampling, encoder name),
    so a grid of N runs, the merge and the benchmarks all reuse one tokenisation. Pass `encoder`
    (a batched map function) with a distinct `encoder_name` for other input formats, e.g. T5
    text-to-text. Each example also gets `length` (tokens) for length-grouped batches.
    """
    key_parts = [
        TOKENIZE_CACHE_VERSION,
        tokenizer_fingerprint(tokenizer),
        max_length,
        splits.task.name,
        splits.fingerprint,
        splits.max_train_samples,
        splits.max_test_samples,
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

    drop = [name for name in splits.task.text_fields]
    tokenized = splits.splits.map(with_length, batched=True, remove_columns=drop, desc="tokenizing")
    try:
        with atomic_dir(target, overwrite=True) as tmp:
            tokenized.save_to_disk(str(tmp))
    except SoupError:  # a read-only or full cache is not fatal: we still have the data in memory
        return tokenized
    from datasets import load_from_disk

    return load_from_disk(str(target))


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(DataArguments).parse_args_into_dataclasses(args=argv)
    splits = load_glue(args)
    task = splits.task
    print(f"task {task.name} from {splits.source}; split fingerprint {splits.fingerprint}")
    for name, dataset in splits.splits.items():
        if task.is_regression:
            summary = f"mean score {np.mean(dataset['label']):.3f}"
        else:
            counts = np.bincount(np.asarray(dataset["label"]), minlength=task.num_labels)
            summary = ", ".join(f"{label} {count}" for label, count in zip(task.label_names, counts))
        print(f"  {name:16s} {len(dataset):7d} rows  ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
