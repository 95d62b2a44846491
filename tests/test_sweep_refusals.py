"""A rerun into a folder that holds a different sweep is refused naming what changed: the flag and
both values, or the data file whose bytes changed; never a bare hash of the data."""

from __future__ import annotations

import re

import pytest
from sweep_helpers import (
    load_sweep_main,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    tiny_flags,
    write_tiny_rte,
)

from hf_soup.errors import cli_main
from hf_soup.sweep.identity import sweep_difference

sweep_main = load_sweep_main()


@pytest.fixture
def finished(tiny_bert_dir, tmp_path):
    """A folder holding one finished point of a tiny sweep, and the data it read."""
    glue = write_tiny_rte(tmp_path / "glue")
    out = tmp_path / "out"
    assert sweep_main(tiny_flags(tiny_bert_dir, glue, out, "--grid", "seed=0")) == 0
    return glue, out


def _refusal(argv, capsys) -> str:
    capsys.readouterr()
    assert cli_main(sweep_main, argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "holds a different sweep" in line and "--output_dir" in line
    assert not re.search(r"data: '[0-9a-f]{20}'", line), line  # not the data's hash
    return line


def test_a_changed_flag_is_named_with_both_values(finished, tiny_bert_dir, capsys):
    glue, out = finished
    line = _refusal(tiny_flags(tiny_bert_dir, glue, out, "--grid", "seed=0", "--weight_decay", "0.1"), capsys)
    assert "--weight_decay: unset before, 0.1 now" in line
    argv = tiny_flags(tiny_bert_dir, glue, out, "--grid", "seed=0")
    argv[argv.index("--heldout_size") + 1] = "50"
    assert "--heldout_size: 40.0 before, 50.0 now" in _refusal(argv, capsys)
    argv = tiny_flags(tiny_bert_dir, glue, out, "--grid", "seed=0")
    argv[argv.index("--max_seq_length") + 1] = "16"
    assert "--max_seq_length: 32 before, 16 now" in _refusal(argv, capsys)


def test_a_data_file_changed_in_place_is_named(finished, tiny_bert_dir, capsys):
    glue, out = finished
    train = glue / "RTE" / "train.tsv"
    lines = train.read_text().splitlines(keepends=True)
    train.write_text("".join(lines[:-1]))  # one training row fewer
    line = _refusal(tiny_flags(tiny_bert_dir, glue, out, "--grid", "seed=0"), capsys)
    assert f"the train file {train} changed since this folder's sweep began (sha256 " in line


def test_the_difference_of_recorded_values():
    recorded = {
        "shared": {"data": "a" * 20, "fixed": {"warmup_steps": 0.1}, "start": {}},
        "data": {
            "arguments": {"train_file": "/old/t.csv", "label_column_name": "y"},
            "source": {"kind": "files", "files": {"train": {"path": "/old/t.csv", "sha256": "1" * 64}}},
            "task": {"label_names": ["a", "b"]},
        },
    }
    now = {"data": "b" * 20, "fixed": {"warmup_steps": 0.1}, "start": {}}
    moved = {
        "arguments": {"train_file": "/new/t.csv", "label_column_name": "y"},
        "source": {"kind": "files", "files": {"train": {"path": "/new/t.csv", "sha256": "2" * 64}}},
        "task": {"label_names": ["a", "b"]},
    }
    assert sweep_difference(recorded, now, moved) == (
        "the train file: /old/t.csv before, /new/t.csv now, with other contents "
        "(sha256 111111111111… before, 222222222222… now)"
    )
    relabelled = {**recorded["data"], "task": {"label_names": ["a", "b", "c"]}}
    assert sweep_difference(recorded, now, relabelled) == (
        "data.task.label_names: ['a', 'b'] before, ['a', 'b', 'c'] now"
    )
    other_column = {**recorded["data"], "arguments": {"train_file": "/old/t.csv", "label_column_name": "z"}}
    assert sweep_difference(recorded, now, other_column) == "--label_column_name: 'y' before, 'z' now"
    assert sweep_difference(recorded, {**now, "data": "a" * 20, "start": {"warm_start_epochs": 1}}) == (
        "--warm_start_epochs: unset before, 1 now"
    )
