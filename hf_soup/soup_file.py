"""`soup.json`: the contract between the merge and whatever reads a soup (the card, the publisher, you).

    from hf_soup.soup_file import read_soup, build_soup, write_soup
    soup = read_soup("soups/rte-greedy")                 # checked: errors name the file and the field
    soup["results"]["soup"][GAIN_KEY]                    # the soup's test gain over the best single

Why a module of its own: the merge writes the file, the checkpoint-averaging callback writes a
small one, the card and the publisher read it; one owner of its name, format, version, keys and
reader keeps them agreeing (as `hf_soup.ingredient` does for `ingredient.json`). The schema is
documented in docs/FORMATS.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hf_soup.atomic import write_json_atomic
from hf_soup.errors import SoupError
from hf_soup.ingredient import stamped_record

SOUP_FILE = "soup.json"
FORMAT = "hf_soup.soup"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_MAJOR = 1  # readers refuse a newer major version

# Keys of `results` rows.
GAIN_KEY = "gain_over_best_single"  # a row's test gain over the best single, with its paired-bootstrap interval
MAJORITY_KEY = "majority"  # the row of a model that learned nothing (always the majority label)
BEATS_MAJORITY_KEY = "best_single_vs_majority"  # the majority row's gains of the best single over it
WEIGHTS_SHA256_KEY = "weights_sha256"  # {weight file name: sha256 of its bytes}, as sha256sum prints it
NOT_COMPARED = ("best_single", "oracle_best_single", MAJORITY_KEY)  # rows with no gain: baselines, one chosen on test


def build_soup(**fields: Any) -> dict[str, Any]:
    """A soup record: format and version, then `fields` (docs/FORMATS.md), then versions and time."""
    return stamped_record(FORMAT, FORMAT_VERSION, fields)


def write_soup(folder: str | os.PathLike, record: dict[str, Any]) -> Path:
    """`<folder>/soup.json`, written atomically."""
    path = Path(folder) / SOUP_FILE
    write_json_atomic(path, record)
    return path


def read_soup(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and check a scored soup's `<folder>/soup.json` (docs/FORMATS.md); errors name the file and field."""
    path = Path(folder) / SOUP_FILE
    try:
        soup = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise SoupError(f"{path}: not found (a soup folder is written by `python -m hf_soup.merge`)") from err
    except (OSError, ValueError) as err:
        raise SoupError(f"{path}: not readable JSON ({err})") from err
    if not isinstance(soup, dict) or soup.get("format") != FORMAT:
        raise SoupError(f"{path}: field 'format' must be {FORMAT!r}")
    version = soup.get("format_version")
    if not isinstance(version, int) or version > SUPPORTED_FORMAT_MAJOR:
        raise SoupError(f"{path}: field 'format_version' {version!r} is newer than this hf_soup understands (1)")
    for key, kind in (
        ("name", str),
        ("recipe", str),
        ("task", str),
        ("primary_metric", str),
        ("base_model", dict),
        ("ingredients", list),
        ("results", dict),
    ):
        if not isinstance(soup.get(key), kind):
            raise SoupError(f"{path}: field '{key}' is missing or not a {kind.__name__}")
    if not isinstance(soup["results"].get("soup"), dict) or not isinstance(soup["results"]["soup"].get("test"), dict):
        raise SoupError(f"{path}: field 'results.soup.test' is missing")
    for i, ingredient in enumerate(soup["ingredients"]):
        if not isinstance(ingredient, dict) or not isinstance(ingredient.get("name"), str):
            raise SoupError(f"{path}: field 'ingredients[{i}].name' is missing")
    return soup
