"""soup.json has one owner (hf_soup.soup_file): its format, version, keys, writer and reader."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from soup_folders import soup_record

import hf_soup
from hf_soup.errors import SoupError
from hf_soup.soup_file import FORMAT, FORMAT_VERSION, GAIN_KEY, SOUP_FILE, build_soup, read_soup, write_soup

PACKAGE = Path(hf_soup.__file__).parent


def test_a_built_record_round_trips_through_the_reader(tmp_path):
    fields = {key: value for key, value in soup_record().items() if key not in ("format", "format_version")}
    record = build_soup(**fields)
    assert list(record)[:2] == ["format", "format_version"] and list(record)[-2:] == ["versions", "created"]
    assert record["format"] == FORMAT and record["format_version"] == FORMAT_VERSION
    assert write_soup(tmp_path, record) == tmp_path / SOUP_FILE
    assert read_soup(tmp_path) == json.loads(json.dumps(record))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "hf_soup.ingredient"}, "field 'format' must be 'hf_soup.soup'"),
        ({"format_version": FORMAT_VERSION + 1}, "field 'format_version' 2 is newer"),
        ({"results": []}, "field 'results' is missing or not a dict"),
    ],
)
def test_the_reader_names_the_file_and_field(tmp_path, change, message):
    write_soup(tmp_path, {**soup_record(), **change})
    with pytest.raises(SoupError, match=re.escape(message)) as caught:
        read_soup(tmp_path)
    assert str(tmp_path / SOUP_FILE) in str(caught.value)


def test_the_format_string_and_the_gain_key_are_written_once_in_the_package():
    literals = {f'"{FORMAT}"': [], f'"{GAIN_KEY}"': []}
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        for literal, found in literals.items():
            if literal in text:
                found.append(path.relative_to(PACKAGE).as_posix())
    assert literals == {f'"{FORMAT}"': ["soup_file.py"], f'"{GAIN_KEY}"': ["soup_file.py"]}
