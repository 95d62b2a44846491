"""`ingredient.json`: the contract between whatever fine-tunes a model and the merge.

Why a module of its own: the sweep (`hf_soup.sweep`), the Trainer callback any user can add to their own
script (`callbacks.IngredientExportCallback`) and the merge (`checkpoints.py`) all read or write
this file; one reader/writer keeps them agreeing. The schema is documented in docs/FORMATS.md.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hf_soup.atomic import write_json_atomic
from hf_soup.errors import SoupError

INGREDIENT_FILE = "ingredient.json"
# The held-out and test logits stored beside an ingredient's weights (hf_soup.stored_logits): not weights.
LOGITS_FILE = "logits.safetensors"
FORMAT = "hf_soup.ingredient"
FORMAT_VERSION = 1
REQUIRED_FIELDS = ("run_id", "task", "base_model", "head_init_seed", "seed", "hyperparameters", "split", "metrics")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the weights (recorded in every output)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("hf_soup", "transformers", "torch", "datasets", "accelerate", "safetensors", "huggingface_hub"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            if name == "hf_soup":
                from hf_soup import __version__

                found[name] = __version__
    return found


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def weights_sha256(model_dir: str | os.PathLike) -> str | None:
    """sha256 over a folder's `*.safetensors` weight files (sorted by name): identifies a base checkpoint.

    None when the folder holds no safetensors (e.g. a Hub id not downloaded; the revision then
    identifies it).
    """
    folder = Path(model_dir)
    files = sorted(f for f in folder.glob("*.safetensors") if f.name != LOGITS_FILE) if folder.is_dir() else []
    if not files:
        return None
    return files_sha256(files)


def files_sha256(files: Sequence[Path]) -> str:
    """One sha256 over the bytes of `files`, in the given order (weights only, never logits.safetensors)."""
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def build_ingredient(**fields: Any) -> dict[str, Any]:
    """An ingredient record: `fields` (see docs/FORMATS.md) plus format, versions and time."""
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
    if missing:
        raise ValueError(f"ingredient record is missing {missing}")
    return stamped_record(FORMAT, FORMAT_VERSION, fields)


def stamped_record(format: str, version: int, fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` behind a format name and version, followed by the library versions and the time
    (unless `fields` has them): the frame of every record hf_soup writes (ingredient.json, soup.json)."""
    record: dict[str, Any] = {"format": format, "format_version": version}
    record.update(fields)
    record.setdefault("versions", library_versions())
    record.setdefault("created", utc_now())
    return record


def write_ingredient(folder: str | os.PathLike, record: dict[str, Any]) -> Path:
    path = Path(folder) / INGREDIENT_FILE
    write_json_atomic(path, record)
    return path


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a missing or malformed file is a one-line SoupError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SoupError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SoupError(f"{path}: not valid JSON ({err})") from None
    except OSError as err:  # a file where a folder was expected, unreadable, ...
        raise SoupError(f"{path}: cannot read ({err.strerror or err})") from None


def read_ingredient(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and check `<folder>/ingredient.json`; a SoupError names the file and field on problems."""
    path = Path(folder) / INGREDIENT_FILE
    record = read_json(path)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise SoupError(f"{path}: field 'format' must be {FORMAT!r}")
    if not isinstance(record.get("format_version"), int) or record["format_version"] > FORMAT_VERSION:
        raise SoupError(f"{path}: field 'format_version' {record.get('format_version')!r} is not supported")
    for name in REQUIRED_FIELDS:
        if name not in record:
            raise SoupError(f"{path}: missing field {name!r}")
    for split in ("heldout",):
        if "primary" not in record["metrics"].get(split, {}):
            raise SoupError(f"{path}: missing field 'metrics.{split}.primary'")
    return record


def is_ingredient(folder: str | os.PathLike) -> bool:
    """True when `folder` holds a readable, valid ingredient.json (used to skip finished runs)."""
    try:
        read_ingredient(folder)
    except SoupError:
        return False
    return True
