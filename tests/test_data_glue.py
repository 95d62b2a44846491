"""GLUE presets from GLUE's TSV folders: the manifest's counts, the held-out carve, bad TSV rows, the token cache."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hf_soup.data import DataArguments, carve_heldout, heldout_count, load_splits, read_glue_tsv, tokenize_splits
from hf_soup.errors import SoupError
from hf_soup.tasks import get_task

# Label counts from ../shared/glue/README.md, in Hub id order.
README_LABEL_COUNTS = {
    "cola": {"train": (2528, 6023), "test": (322, 721)},
    "sst2": {"train": (29780, 37569), "test": (428, 444)},
    "mrpc": {"train": (1194, 2474), "test": (129, 279)},
    "rte": {"train": (1249, 1241), "test": (146, 131)},
    "wnli": {"train": (323, 312), "test": (40, 31)},
}
FOLDERS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "rte": "RTE", "wnli": "WNLI"}


@pytest.mark.parametrize("task_name", sorted(FOLDERS))
def test_local_task_matches_manifest_and_readme(glue_dir, glue_manifest, task_name):
    folder = FOLDERS[task_name]
    if not (glue_dir / folder / "train.tsv").is_file():
        pytest.skip(f"{folder} not in {glue_dir}")
    splits = load_splits(DataArguments(task=task_name, glue_dir=str(glue_dir)))
    task = splits.task
    train_total = len(splits["train"]) + len(splits["heldout"])
    assert train_total == glue_manifest[(folder, "train.tsv")]
    assert len(splits["test"]) == glue_manifest[(folder, "dev.tsv")]
    train_labels = np.concatenate([splits["train"]["label"], splits["heldout"]["label"]])
    assert tuple(np.bincount(train_labels, minlength=task.num_labels)) == README_LABEL_COUNTS[task_name]["train"]
    assert (
        tuple(np.bincount(splits["test"]["label"], minlength=task.num_labels)) == README_LABEL_COUNTS[task_name]["test"]
    )
    assert splits.describe()["heldout_size"] == heldout_count(train_total, 0.1, 100, 2000)


def test_qnli_dev_reads_and_missing_train_is_named(glue_dir, glue_manifest):
    task = get_task("qnli")
    dev = read_glue_tsv(task, glue_dir / "QNLI" / "dev.tsv")
    assert len(dev["label"]) == glue_manifest[("QNLI", "dev.tsv")]
    assert np.bincount(dev["label"]).tolist() == [2702, 2761]
    with pytest.raises(SoupError, match=r"QNLI/train\.tsv: missing file"):
        load_splits(DataArguments(task="qnli", glue_dir=str(glue_dir)))


def test_heldout_is_disjoint_deterministic_and_covers_train(glue_dir, cli_env):
    args = DataArguments(task="rte", glue_dir=str(glue_dir))
    splits = load_splits(args)
    train_idx, heldout_idx = set(splits["train"]["idx"]), set(splits["heldout"]["idx"])
    assert not train_idx & heldout_idx
    assert train_idx | heldout_idx == set(range(2490))
    again = load_splits(args)
    assert again.fingerprint == splits.fingerprint
    assert again["heldout"]["idx"] == splits["heldout"]["idx"]
    # Another process (fresh interpreter, hash randomisation on) carves the same rows.
    code = (
        "import json; from hf_soup.data import DataArguments, load_splits; "
        f"s = load_splits(DataArguments(task='rte', glue_dir={str(glue_dir)!r})); "
        "print(json.dumps([s.fingerprint, list(s['heldout']['idx'])]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=cli_env).stdout
    assert json.loads(out.strip().splitlines()[-1]) == [splits.fingerprint, list(splits["heldout"]["idx"])]


def test_max_train_samples_keeps_heldout_and_nests(glue_dir):
    full = load_splits(DataArguments(task="rte", glue_dir=str(glue_dir)))
    small = load_splits(DataArguments(task="rte", glue_dir=str(glue_dir), max_train_samples=100))
    bigger = load_splits(DataArguments(task="rte", glue_dir=str(glue_dir), max_train_samples=200))
    assert small.fingerprint == full.fingerprint
    assert small["heldout"]["idx"] == full["heldout"]["idx"]
    assert len(small["train"]) == 100
    assert set(small["train"]["idx"]) < set(bigger["train"]["idx"])


def test_heldout_seed_changes_the_split(glue_dir):
    a = load_splits(DataArguments(task="rte", glue_dir=str(glue_dir), heldout_seed=0))
    b = load_splits(DataArguments(task="rte", glue_dir=str(glue_dir), heldout_seed=1))
    assert a.fingerprint != b.fingerprint and a["heldout"]["idx"] != b["heldout"]["idx"]


def test_heldout_size_rules():
    assert heldout_count(2490, 0.1, 100, 2000) == 249
    assert heldout_count(635, 0.1, 100, 2000) == 100  # floor
    assert heldout_count(67349, 0.1, 100, 2000) == 2000  # cap
    assert heldout_count(2490, 300, 100, 2000) == 300  # explicit count ignores floor/cap
    with pytest.raises(SoupError, match="not smaller than the 2490 training rows"):
        heldout_count(2490, 5000, 100, 2000)
    heldout, rest = carve_heldout(10, 3, seed=0)
    assert sorted([*heldout, *rest]) == list(range(10))


def _write_glue(root, folder, train_text, dev_text=None):
    path = root / folder
    path.mkdir(parents=True)
    (path / "train.tsv").write_text(train_text)
    (path / "dev.tsv").write_text(dev_text if dev_text is not None else train_text)
    return root


RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"


def test_malformed_row_names_file_and_line(tmp_path):
    rows = "".join(f'{i}\ta "quoted\tb\tentailment\n' for i in range(3))  # unbalanced quotes are fine
    bad = RTE_HEADER + rows + "3\tonly two\tcolumns\n"
    _write_glue(tmp_path, "RTE", bad)
    with pytest.raises(SoupError, match=r"RTE/train\.tsv:5: expected 4 columns, found 3"):
        load_splits(DataArguments(task="rte", glue_dir=str(tmp_path), heldout_size=1))


def test_unknown_label_names_file_and_line(tmp_path):
    _write_glue(tmp_path, "RTE", RTE_HEADER + "0\ta\tb\tentailment\n1\ta\tb\tmaybe\n")
    with pytest.raises(SoupError, match=r"RTE/train\.tsv:3: label 'maybe' is not one of"):
        load_splits(DataArguments(task="rte", glue_dir=str(tmp_path), heldout_size=1))


def test_out_of_range_numeric_label(tmp_path):
    _write_glue(tmp_path, "WNLI", RTE_HEADER + "0\ta\tb\t1\n1\ta\tb\t2\n")
    with pytest.raises(SoupError, match=r"WNLI/train\.tsv:3: label '2'"):
        load_splits(DataArguments(task="wnli", glue_dir=str(tmp_path), heldout_size=1))


def test_missing_dev_file_is_named(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text(RTE_HEADER + "0\ta\tb\tentailment\n1\ta\tb\tentailment\n")
    with pytest.raises(SoupError, match=r"RTE/dev\.tsv: missing file"):
        load_splits(DataArguments(task="rte", glue_dir=str(tmp_path), heldout_size=1))


def test_heldout_larger_than_train_is_an_error(tmp_path):
    _write_glue(tmp_path, "RTE", RTE_HEADER + "0\ta\tb\tentailment\n1\ta\tb\tentailment\n")
    with pytest.raises(SoupError, match="heldout_size 100 is not smaller"):
        load_splits(DataArguments(task="rte", glue_dir=str(tmp_path)))


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, cli_env):
    _write_glue(tmp_path, "RTE", RTE_HEADER + "0\ta\tb\tentailment\n1\tx\n")
    result = subprocess.run(
        [sys.executable, "-m", "hf_soup.data", "--task", "rte", "--glue_dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=cli_env,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "train.tsv:3: expected 4 columns, found 2" in result.stderr
    assert "Traceback" not in result.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "hf_soup.data", "--task", "nope", "--glue_dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=cli_env,
    )
    assert unknown.returncode == 2 and "GLUE presets: cola" in unknown.stderr


def test_tokenize_once_and_cache(glue_dir, tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    splits = load_splits(DataArguments(task="rte", glue_dir=str(glue_dir), max_train_samples=64, max_test_samples=32))
    first = tokenize_splits(splits, tokenizer, 64, cache_dir=tmp_path)
    cached = list((tmp_path / "tokenized").iterdir())
    assert len(cached) == 1
    assert set(first) == {"train", "heldout", "test"}
    assert max(first["train"]["length"]) <= 64
    assert first["train"]["length"] == [len(ids) for ids in first["train"]["input_ids"]]
    assert "sentence1" not in first["train"].column_names and "label" in first["train"].column_names
    marker = (cached[0] / "dataset_dict.json").stat()

    def must_not_run(batch):
        raise AssertionError("tokenised again: the cache was not reused")

    # A rebuild would call the encoder (it is not part of the key: same encoder_name) and would
    # replace the folder (a new inode): a reuse does neither.
    again = tokenize_splits(splits, tokenizer, 64, cache_dir=tmp_path, encoder=must_not_run)
    assert again["heldout"]["input_ids"] == first["heldout"]["input_ids"]
    assert (cached[0] / "dataset_dict.json").stat().st_ino == marker.st_ino
    assert list((tmp_path / "tokenized").iterdir()) == cached
    tokenize_splits(splits, tokenizer, 32, cache_dir=tmp_path)
    assert len(list((tmp_path / "tokenized").iterdir())) == 2  # max length is part of the key
