"""Where the rows come from: your files, GLUE's TSV folders, Hub datasets and local dataset folders,
and what identifies their bytes (file sha256s, the Hub commit)."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_soup.data.arguments import DataArguments
from hf_soup.errors import SoupError
from hf_soup.quiet import quiet_datasets
from hf_soup.tasks import Task

if TYPE_CHECKING:  # imported where used: `python -m hf_soup.merge --skip_scoring` never loads datasets
    from datasets import Dataset

csv.field_size_limit(sys.maxsize)


FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".lz4")


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


def file_stem(path: str | os.PathLike) -> str:
    """A data file's name without its format and compression extensions (`snli_1.0_dev.jsonl.gz` ->
    `snli_1.0_dev`): dots inside the name are kept."""
    name = Path(path).name
    for suffix in COMPRESSIONS:
        name = name.removesuffix(suffix).removesuffix(suffix.upper())
    stem, extension = os.path.splitext(name)
    return stem if extension.lower() in FILE_FORMATS else name


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
    # datasets' JSON builder logs its own multi-line error before raising: the one line below says it.
    json_logger = logging.getLogger("datasets.packaged_modules.json.json")
    json_level = json_logger.level
    try:
        json_logger.setLevel(logging.CRITICAL)
        with warnings.catch_warnings(), quiet_datasets():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # csv/tsv rows wider than the header
            dataset = load_dataset(builder, data_files={"train": str(path)}, split="train", **kwargs)
    except Exception as err:  # a malformed row, bad JSON, a truncated parquet...: one line naming the file
        if "corresponds to no data" in str(err):
            raise SoupError(f"{path}: no rows") from None
        bad_line = first_bad_json_line(path) if fmt == "json" else None
        if bad_line:
            raise SoupError(f"{path}:{bad_line}") from None
        raise SoupError(f"{path}: cannot be read as {fmt} ({_one_line(err)})") from None
    finally:
        json_logger.setLevel(json_level)
    return dataset


def _open_text(path: Path):
    """A (possibly compressed) text file, for the error path only: zstd / lz4 need packages we do not require."""
    import bz2
    import gzip
    import lzma

    openers = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
    opener = openers.get(path.suffix.lower(), open)
    return opener(path, "rt", encoding="utf-8-sig", errors="replace")


def first_bad_json_line(path: Path) -> str | None:
    """`LINE: not valid JSON (why, column C)` for the first malformed line of a JSON-lines file (or the
    position json reports for a JSON document), or None when json finds nothing wrong.

    datasets reports a byte offset or a row count; a user opens the file at a line."""
    if path.suffix.lower() in (".zst", ".lz4"):
        return None
    with _open_text(path) as handle:
        lines = handle.read().splitlines()
    first = next((n for n, line in enumerate(lines, 1) if line.strip()), None)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError as err:
            if number == first:  # not JSON lines, or a document: what does json make of the whole file?
                try:
                    json.loads("\n".join(lines))
                except json.JSONDecodeError as whole:
                    return f"{whole.lineno}: not valid JSON ({whole.msg}, column {whole.colno})"
                return None
            return f"{number}: not valid JSON ({err.msg}, column {err.colno})"
    return None


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
