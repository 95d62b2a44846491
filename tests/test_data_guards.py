"""Every numeric data flag and every malformed data shape: one line, exit 2, nothing written.

Also what a test split is made of: a user's test file is used or refused (never silently replaced
by rows carved from train), and `--max_test_samples` keeps a seeded subset of both classes.
"""

from __future__ import annotations

import csv
import json

import pytest

from hf_soup.data import DataArguments, load_splits
from hf_soup.data import main as data_main
from hf_soup.errors import cli_main


def write_csv(path, rows, header=("text", "label")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def rows(n, start=0):
    return [
        [f"sentence number {i} about {'cats' if i % 2 else 'dogs'}", "pos" if i % 2 else "neg"]
        for i in range(start, start + n)
    ]


@pytest.fixture
def train_file(tmp_path):
    return write_csv(tmp_path / "train.csv", rows(300))


def one_line_error(argv, capsys) -> str:
    code = cli_main(data_main, [str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (code, err)
    return err[0]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max_test_samples", "0"], "max_test_samples=0"),
        (["--max_test_samples", "-3"], "max_test_samples=-3"),
        (["--max_train_samples", "0"], "max_train_samples=0"),
        (["--heldout_size", "0"], "heldout_size=0"),
        (["--heldout_size", "-0.1"], "heldout_size=-0.1"),
        (["--heldout_size", "nan"], "heldout_size=nan"),
        (["--heldout_size", "inf"], "heldout_size=inf"),
        (["--heldout_size", "12.5"], "a row count must be a whole number"),
        (["--test_split_size", "nan"], "test_split_size=nan"),
        (["--test_split_size", "0"], "test_split_size=0"),
        (["--heldout_min", "0"], "heldout_min=0"),
        (["--heldout_max", "-1"], "heldout_max=-1"),
        (["--heldout_min", "500", "--heldout_max", "100"], "must be <= heldout_max"),
        (["--max_seq_length", "0"], "max_seq_length=0"),
        (["--heldout_seed", "-1"], "heldout_seed=-1"),
        (["--heldout_split", "train"], "heldout_split: 'train'"),
    ],
)
def test_numeric_and_split_flags_out_of_range(flags, message, train_file, capsys):
    assert message in one_line_error(["--train_file", train_file, *flags], capsys)


def _jsonl(path, records):
    """`records` with two alternating labels (unless a record sets its own), one JSON object a line."""
    path.write_text("".join(json.dumps({"label": "xy"[i % 2], **r}) + "\n" for i, r in enumerate(records)))
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: _jsonl(d / "t.jsonl", [{"text": ["a", "b"]}] * 20), "holds list<item: string> values"),
        (lambda d: _jsonl(d / "t.jsonl", [{"text": {"a": 1}}] * 20), "holds struct"),
        (lambda d: _jsonl(d / "t.jsonl", [{"text": "a", "label": ["x"]}] * 20), "not labels"),
        (lambda d: write_csv(d / "t.csv", [["a", ""]] * 20), "empty or NaN label"),
        (lambda d: write_csv(d / "t.csv", [["a"]] * 20, header=("text",)), "missing column 'label'"),
        (lambda d: write_csv(d / "t.csv", []), "no rows"),
        (lambda d: (d / "t.csv").write_bytes(b"text,label\n\xff\xfe bad bytes,x\n") and d / "t.csv", "t.csv"),
        (lambda d: (d / "t.csv").write_bytes(b"") or d / "t.csv", "empty file"),
    ],
)
def test_malformed_training_data(make, message, tmp_path, capsys):
    path = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert message in one_line_error(["--train_file", path], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written beside the data


@pytest.mark.parametrize("flag", ["--test_file", "--validation_file"])
def test_a_test_file_without_the_label_column_is_refused(flag, train_file, tmp_path, capsys):
    test = write_csv(tmp_path / "test.csv", [[r[0], r[1]] for r in rows(40)], header=("text", "gold"))
    line = one_line_error(["--train_file", train_file, flag, test], capsys)
    assert "test.csv" in line and "no label column 'label'" in line and "text, gold" in line


def test_max_test_samples_is_a_seeded_subset_not_the_first_rows(train_file, tmp_path):
    sorted_by_label = sorted(rows(200, start=1000), key=lambda r: r[1])  # every "neg" first
    test = write_csv(tmp_path / "test.csv", sorted_by_label)
    args = DataArguments(train_file=str(train_file), test_file=str(test), max_test_samples=40)
    splits = load_splits(args)
    labels = splits["test"]["label"]
    assert len(labels) == 40 and len(set(labels)) == 2
    assert load_splits(args)["test"]["idx"] == splits["test"]["idx"]  # the same rows every time


def test_a_merge_keeps_the_recorded_max_seq_length(train_file):
    from hf_soup.data import load_recorded
    from hf_soup.merge import MergeDataArguments

    description = load_splits(DataArguments(train_file=str(train_file), max_seq_length=64)).description()
    splits, _ = load_recorded({"data": description}, MergeDataArguments(), "ingredient.json")
    assert splits.arguments["max_seq_length"] == 64
    splits, _ = load_recorded({"data": description}, MergeDataArguments(max_seq_length=32), "ingredient.json")
    assert splits.arguments["max_seq_length"] == 32
