"""`hf_soup.data.load_splits` on anyone's data: files and dataset folders, inferred tasks, splits,
bad input, and every numeric data flag and malformed data shape (one line, exit 2, nothing written).

Small files written into tmp_path (no model involved): each test states what it proves. The
GLUE-through-files tests read ../shared/glue and skip where it is absent. What a test split is made
of: a user's test file is used or refused (never silently replaced by rows carved from train), and
`--max_test_samples` keeps a seeded subset of both classes.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from hf_soup.data import CARVED_TEST_SEED, DataArguments, load_splits, tokenize_splits
from hf_soup.data import main as data_main
from hf_soup.errors import SoupError, cli_main
from hf_soup.metrics import compute_task_metrics
from hf_soup.tasks import Task, get_task, make_task

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def write_csv(path, rows, header=("label", "title", "body"), delimiter=","):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def news_rows(n, labels=(1, 2, 3, 4), seed=0):
    rng = np.random.default_rng(seed)
    return [
        [labels[i % len(labels)], f"title {i}, with a comma", " ".join(rng.choice(WORDS, 6)) + f' "quoted" {i}']
        for i in range(n)
    ]


def args(**kw) -> DataArguments:
    kw.setdefault("heldout_size", 20)
    return DataArguments(**kw)


def test_csv_with_int_labels_infers_a_task_and_carves_test(tmp_path):
    path = write_csv(tmp_path / "news.csv", news_rows(400))
    splits = load_splits(args(train_file=str(path), test_split_size=40))
    task = splits.task
    # 1-based integer labels stay ints (values), their text is id2label; ids follow the sorted values
    assert task.label_values == (1, 2, 3, 4) and task.label_names == ("1", "2", "3", "4")
    assert task.text_fields == ("title", "body") and task.is_pair  # the two columns besides the label
    assert task.metrics == ("accuracy", "macro_f1") and task.primary_metric == "accuracy"
    assert task.name == "news" and task.t5_prompt == "news"
    assert [len(splits[s]) for s in ("train", "heldout", "test")] == [340, 20, 40]
    # every source row is in exactly one split; labels were mapped value -> id (value 1 -> id 0, ...)
    idx = [i for s in ("train", "heldout", "test") for i in splits[s]["idx"]]
    assert sorted(idx) == list(range(400))
    row = splits["test"][0]
    assert row["label"] == (row["idx"] % 4)
    assert row["title"] == f"title {row['idx']}, with a comma" and '"quoted"' in row["body"]  # RFC quoting parsed
    assert any("carved from train as the test split" in note for note in splits.notes)
    assert splits.tests["test"] == {
        "from": "train", "carved": True, "seed": CARVED_TEST_SEED, "size_arg": 40, "size": 40,
    }  # fmt: skip
    # the carved test does not move with the held-out seed; the held-out does
    other = load_splits(args(train_file=str(path), test_split_size=40, heldout_seed=1))
    assert other["test"]["idx"] == splits["test"]["idx"]
    assert other["heldout"]["idx"] != splits["heldout"]["idx"] and other.fingerprint != splits.fingerprint


def test_string_labels_sorted_and_recorded_task_keeps_ids(tmp_path):
    rows = [[label, f"text {i}", "x"] for i, label in enumerate(["spam", "ham", "eggs"] * 40)]
    path = write_csv(tmp_path / "mail.csv", rows)
    splits = load_splits(args(train_file=str(path), text_column_names="title", test_split_size=20))
    assert splits.task.label_names == ("eggs", "ham", "spam") and not splits.task.is_pair
    assert splits.task.to_dict()["label_values"] == ["eggs", "ham", "spam"]
    # A label added to the file later must not shift ids: with the recorded task it is refused.
    recorded = Task.from_dict(json.loads(json.dumps(splits.task.to_dict())))
    write_csv(path, [*rows, ["bacon", "new", "x"]])
    with pytest.raises(SoupError, match=r"mail\.csv: column 'label', row 121: label 'bacon' never appears"):
        load_splits(args(train_file=str(path), text_column_names="title", test_split_size=20), task=recorded)


def test_float_labels_are_regression_and_can_be_forced_to_classes(tmp_path):
    rows = [[f"{(i % 5) * 0.5:.1f}", f"text {i}", "y"] for i in range(150)]
    path = write_csv(tmp_path / "scores.csv", rows)
    splits = load_splits(args(train_file=str(path), text_column_names="title", test_split_size=20))
    assert splits.task.is_regression and splits.task.metrics == ("pearson", "spearman")
    assert splits.task.num_labels == 1 and splits["train"].features["label"].dtype == "float32"
    integral = write_csv(tmp_path / "stars.csv", [[f"{i % 3}.0", f"t {i}", "y"] for i in range(150)])
    classes = load_splits(
        args(train_file=str(integral), text_column_names="title", test_split_size=20, do_regression=False)
    )
    assert classes.task.label_values == (0, 1, 2)  # JSON-style 1.0 labels, read as classes when asked


def test_task_name_from_the_folder_when_the_file_only_names_a_split(tmp_path):
    """`tickets/data/train.csv` is the task "tickets", not "train" (the card's title and tags, T5's prompt);
    `--task_name` overrides it, and a preset cannot be renamed."""
    (tmp_path / "Support Tickets" / "data").mkdir(parents=True)
    path = write_csv(tmp_path / "Support Tickets" / "data" / "train.csv", news_rows(120))
    assert load_splits(args(train_file=str(path), test_split_size=20)).task.name == "support_tickets"
    named = load_splits(args(train_file=str(path), test_split_size=20, task_name="Ticket routing"))
    assert named.task.name == "ticket_routing" and named.task.t5_prompt == "ticket_routing"
    with pytest.raises(SoupError, match="task_name: the preset rte is named already"):
        load_splits(args(task="rte", task_name="mine"))


def test_metric_names_choose_the_primary_and_are_checked(tmp_path):
    path = write_csv(tmp_path / "bin.csv", [[i % 2, f"t {i}", "b"] for i in range(150)])
    common = dict(train_file=str(path), text_column_names="title", test_split_size=20)
    splits = load_splits(args(**common, metric_name=["matthews_correlation,accuracy"]))
    assert splits.task.metrics == ("matthews_correlation", "accuracy")
    assert splits.task.primary_metric == "matthews_correlation" and splits.task.primary_parts == (
        "matthews_correlation",
    )
    with pytest.raises(SoupError, match="metric_name: 'pearson' does not apply to classification"):
        load_splits(args(**common, metric_name=["pearson"]))
    with pytest.raises(SoupError, match="metric_name: unknown metric 'auc'"):
        load_splits(args(**common, metric_name=["auc"]))
    with pytest.raises(SoupError, match="'f1' is binary F1 and the task has 3 labels; use macro_f1"):
        make_task("t", ("a",), (1, 2, 3), metrics=["f1"])
    with pytest.raises(SoupError, match="metric_name: the preset rte's metrics are fixed"):
        load_splits(args(task="rte", train_file=str(path), metric_name=["f1"]))


def test_file_formats_by_extension(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(
        {"text": [f"row {i}" for i in range(120)], "label": ["pos" if i % 3 else "neg" for i in range(120)]}
    )
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    frame.to_json(tmp_path / "d.json", orient="records")
    frame.to_parquet(tmp_path / "d.parquet")
    frame.to_csv(tmp_path / "d.csv.gz", index=False)
    loaded = [
        load_splits(args(train_file=str(tmp_path / name), test_split_size=20))
        for name in ("d.jsonl", "d.json", "d.parquet", "d.csv.gz")
    ]
    for splits in loaded:
        assert splits.task.label_names == ("neg", "pos") and splits.task.text_fields == ("text",)
        assert splits.fingerprint == loaded[0].fingerprint  # same rows, whatever the container
    assert len({s.origin["files"]["train"]["sha256"] for s in loaded}) == 4  # but the bytes are recorded


def test_tsv_is_read_without_quote_processing_by_default(tmp_path):
    lines = ["label\ttext"] + [f'{i % 2}\ta "quote that never closes {i}' for i in range(120)]
    path = tmp_path / "raw.tsv"
    path.write_text("\n".join(lines) + "\n")
    splits = load_splits(args(train_file=str(path), test_split_size=20))
    assert len(splits["train"]) + len(splits["heldout"]) + len(splits["test"]) == 120  # no rows merged
    assert not splits.notes[1:]  # only the carved-test note
    quoted = tmp_path / "quoted.tsv"
    write_csv(quoted, [[i % 2, f"has\ttab {i}"] for i in range(120)], header=("label", "text"), delimiter="\t")
    with pytest.raises(SoupError, match=r"quoted\.tsv: cannot be read as tsv"):
        load_splits(args(train_file=str(quoted), test_split_size=20))  # a quoted tab splits the row
    ok = load_splits(args(train_file=str(quoted), test_split_size=20, tsv_quoting="csv"))
    assert ok["train"][0]["text"].startswith("has\ttab")
    simple = tmp_path / "simple.tsv"
    simple.write_text("label\ttext\n" + "".join(f'{i % 2}\t"plain {i}"\n' for i in range(120)))
    noted = load_splits(args(train_file=str(simple), test_split_size=20))
    assert any("--tsv_quoting csv" in note for note in noted.notes)  # looks CSV-quoted: the user is told


def test_test_validation_and_heldout_files(tmp_path):
    train = write_csv(tmp_path / "train.csv", news_rows(200, labels=("a", "b")))
    valid = write_csv(tmp_path / "valid.csv", news_rows(30, labels=("a", "b"), seed=1))
    test = write_csv(tmp_path / "test.csv", news_rows(40, labels=("b", "a"), seed=2))
    both = load_splits(args(train_file=str(train), validation_file=str(valid), test_file=str(test)))
    assert len(both["test"]) == 40 and both.task.validation_splits == ("test",)
    assert any("'validation' split is not used" in note for note in both.notes)
    only_valid = load_splits(args(train_file=str(train), validation_file=str(valid)))
    assert len(only_valid["test"]) == 30 and only_valid.task.validation_splits == ("validation",)
    assert len(only_valid["train"]) + len(only_valid["heldout"]) == 200  # nothing carved as test
    as_heldout = load_splits(args(train_file=str(train), heldout_file=str(valid), test_file=str(test)))
    assert len(as_heldout["heldout"]) == 30 and len(as_heldout["train"]) == 200
    assert as_heldout.heldout["from"] == "file"
    split_heldout = load_splits(
        args(train_file=str(train), validation_file=str(valid), test_file=str(test), heldout_split="validation")
    )
    assert split_heldout.fingerprint == as_heldout.fingerprint  # the same rows, named two ways
    with pytest.raises(SoupError, match="'validation' is also a test split"):
        load_splits(
            args(train_file=str(train), validation_file=str(valid), heldout_split="validation", test_split="validation")
        )


def test_dataset_folder_with_class_labels_and_unlabelled_test(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["neg", "pos"])})

    def part(n, labelled=True):
        return Dataset.from_dict(
            {"sentence": [f"s {i}" for i in range(n)], "label": [i % 2 if labelled else -1 for i in range(n)]},
            features=features,
        )

    DatasetDict(train=part(150), validation=part(30), test=part(30, labelled=False)).save_to_disk(tmp_path / "ds")
    splits = load_splits(args(dataset_name=str(tmp_path / "ds")))
    assert splits.task.label_names == ("neg", "pos") and splits.task.label_values == (0, 1)
    assert splits.task.validation_splits == ("validation",) and len(splits["test"]) == 30
    assert any("'test' split has no labels" in note for note in splits.notes)
    assert splits.origin["kind"] == "folder" and len(splits.origin["sha256"]) == 64
    assert splits.task.name == "ds"


def test_fingerprint_identifies_the_heldout_rows(tmp_path):
    rows = news_rows(200, labels=("a", "b"))
    path = write_csv(tmp_path / "t.csv", rows)
    base = load_splits(args(train_file=str(path), test_split_size=20))
    heldout = set(base["heldout"]["idx"])
    outside = next(i for i in range(200) if i not in heldout and i not in set(base["test"]["idx"]))
    edited = [list(r) for r in rows]
    edited[outside][1] = "changed outside the held-out rows"
    write_csv(path, edited)
    assert load_splits(args(train_file=str(path), test_split_size=20)).fingerprint == base.fingerprint
    edited[min(heldout)][1] = "changed inside the held-out rows"
    write_csv(path, edited)
    assert load_splits(args(train_file=str(path), test_split_size=20)).fingerprint != base.fingerprint


def test_token_cache_key_includes_the_data(tmp_path, tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_csv(tmp_path / "a" / "data.csv", [[i % 2, f"the cat {i}", "x"] for i in range(150)])
    second = write_csv(tmp_path / "b" / "data.csv", [[i % 2, f"the dog {i}", "x"] for i in range(150)])
    common = dict(text_column_names="title", test_split_size=20)
    a = tokenize_splits(load_splits(args(train_file=str(first), **common)), tokenizer, 16, cache_dir=tmp_path / "c")
    b = tokenize_splits(load_splits(args(train_file=str(second), **common)), tokenizer, 16, cache_dir=tmp_path / "c")
    assert a["train"]["input_ids"] != b["train"]["input_ids"]  # same task name and sizes, other text
    assert len(list((tmp_path / "c" / "tokenized").iterdir())) == 2


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        ([[1, "t", "b"], ["", "t", "b"]], {}, r"bad\.csv: column 'label', row 2: empty or NaN label ''"),
        ([[1.5, "t", "b"], ["nan", "t", "b"]], {}, r"bad\.csv: column 'label', row 2: empty or NaN label 'nan'"),
        (
            [[1.5, "t", "b"], ["high", "t", "b"]],
            {},
            r"row 2: label 'high' is not a number, but other labels are",
        ),
        ([[1.5, "t", "b"], ["high", "t", "b"]], {"do_regression": True}, r"row 2: label 'high' is not a number"),
        ([[1, "t", "b"]] * 3, {}, r"only one label value \(1,\) in train"),
        (
            [[1, "t", "b"]] * 3,
            {"label_column_name": "y"},
            r"bad\.csv: missing column 'y'; columns present: label, title, body",
        ),
        ([[1, "t", "b"]] * 3, {"text_column_names": "a,b,c"}, r"at most 2 text columns"),
    ],
)
def test_bad_labels_and_columns_name_file_column_row(tmp_path, rows, extra, message):
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(SoupError, match=message):
        load_splits(
            args(train_file=str(path), heldout_size=1, test_split_size=1, **{"text_column_names": "title", **extra})
        )


def test_more_bad_input(tmp_path):
    train = write_csv(tmp_path / "train.csv", [[i % 2, f"t {i}", "b"] for i in range(40)])
    test = write_csv(tmp_path / "test.csv", [[0, "t", "b"], [7, "t", "b"]])
    with pytest.raises(
        SoupError, match=r"test\.csv: column 'label', row 2: label 7 never appears in the training labels \[0, 1\]"
    ):
        load_splits(args(train_file=str(train), test_file=str(test), text_column_names="title", heldout_size=5))
    empty = write_csv(tmp_path / "empty.csv", [])
    with pytest.raises(SoupError, match=r"empty\.csv: no rows"):
        load_splits(args(train_file=str(train), test_file=str(empty), text_column_names="title", heldout_size=5))
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(SoupError, match=r"data\.xlsx: unknown file extension '\.xlsx'; use one of \.csv, \.tsv"):
        load_splits(args(train_file=str(tmp_path / "data.xlsx")))
    with pytest.raises(SoupError, match=r"nope\.csv: file not found"):
        load_splits(args(train_file=str(tmp_path / "nope.csv")))
    usual = write_csv(
        tmp_path / "usual.csv", [[i % 2, f"id{i}", f"text {i}"] for i in range(150)], ("label", "id", "text")
    )
    assert load_splits(args(train_file=str(usual), test_split_size=20)).task.text_fields == ("text",)
    review = write_csv(
        tmp_path / "review.csv", [[i % 2, f"id{i}", f"text {i}"] for i in range(150)], ("label", "ID", "review")
    )
    assert load_splits(args(train_file=str(review), test_split_size=20)).task.text_fields == ("review",)
    three = write_csv(tmp_path / "three.csv", [[0, "a", "b", "c"]] * 5, header=("label", "x", "y", "z"))
    with pytest.raises(SoupError, match=r"three\.csv: pass --text_column_names .*columns present: x, y, z"):
        load_splits(args(train_file=str(three)))
    with pytest.raises(SoupError, match="no data given"):
        load_splits(DataArguments())
    with pytest.raises(SoupError, match="give one data source"):
        load_splits(args(train_file=str(train), dataset_name="x/y"))
    with pytest.raises(SoupError, match="task mrpc reads 2 text column"):
        load_splits(args(task="mrpc", train_file=str(train), text_column_names="title"))


def test_hub_dataset_unreachable_offline_is_one_line():
    # conftest sets HF_DATASETS_OFFLINE=1: an id that is not cached cannot be loaded
    with pytest.raises(SoupError, match=r"dataset_name nobody/no-such-dataset: cannot load it from the Hub \(offline"):
        load_splits(args(dataset_name="nobody/no-such-dataset"))
    with pytest.raises(SoupError, match=r"dataset_name \./missing/folder: not a dataset folder"):
        load_splits(args(dataset_name="./missing/folder"))


def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, cli_env):
    path = write_csv(tmp_path / "bad.csv", [[1, "t", "b"], [2, "u", "c"]])
    before = sorted(p.name for p in tmp_path.iterdir())
    for flags, expected in [
        (
            ["--train_file", str(path), "--label_column_name", "y"],
            "missing column 'y'; columns present: label, title, body",
        ),
        (["--train_file", str(tmp_path / "x.docx")], "unknown file extension '.docx'"),
        (["--dataset_name", "nobody/no-such-dataset"], "cannot load it from the Hub (offline"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "hf_soup.data", *flags], capture_output=True, text=True, env=cli_env
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.strip().count("\n") == 0, result.stderr
        assert expected in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ----------------------------------------------------------------------------- GLUE through files


def _glue_rows(glue_dir, task_name, filename):
    task = get_task(task_name)
    from hf_soup.data import read_glue_tsv

    return read_glue_tsv(task, glue_dir / task.tsv.folder / filename)


def test_glue_task_through_renamed_csv_matches_the_preset(glue_dir, tmp_path):
    """MRPC as a user's CSV (columns renamed, labels 0/1): the preset's labels, splits and metrics."""
    preset = load_splits(DataArguments(task="mrpc", glue_dir=str(glue_dir)))
    for name, filename in (("train", "train.tsv"), ("dev", "dev.tsv")):
        cols = _glue_rows(glue_dir, "mrpc", filename)
        write_csv(tmp_path / f"{name}.csv", zip(cols["label"], cols["sentence1"], cols["sentence2"]), ("y", "a", "b"))
    files = dict(train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "dev.csv"))
    columns = dict(text_column_names="a,b", label_column_name="y")
    as_preset = load_splits(DataArguments(task="mrpc", **files, **columns))
    assert as_preset.task == preset.task  # the preset itself: names, metrics, mean-of-parts primary
    assert as_preset.fingerprint == preset.fingerprint  # the same held-out rows, texts and label ids
    for split in ("train", "heldout", "test"):
        assert as_preset[split]["label"] == preset[split]["label"]
        assert as_preset[split]["sentence1"] == preset[split]["sentence1"]
    inferred = load_splits(DataArguments(**files, **columns))  # no --task: inferred from the labels
    assert inferred.task.label_values == (0, 1) and inferred.task.metrics == ("accuracy", "f1")
    assert inferred["test"]["label"] == preset["test"]["label"]
    rng = np.random.default_rng(0)
    predictions = rng.integers(0, 2, len(preset["test"]))
    ours = compute_task_metrics(inferred.task, predictions, inferred["test"]["label"])
    glue = compute_task_metrics(preset.task, predictions, preset["test"]["label"])
    assert ours["accuracy"] == glue["accuracy"] and ours["f1"] == glue["f1"]


def test_glue_rte_through_jsonl_with_string_labels(glue_dir, tmp_path):
    preset = load_splits(DataArguments(task="rte", glue_dir=str(glue_dir)))
    names = get_task("rte").label_names
    for name, filename in (("train", "train.tsv"), ("dev", "dev.tsv")):
        cols = _glue_rows(glue_dir, "rte", filename)
        with open(tmp_path / f"{name}.jsonl", "w") as handle:
            for premise, hypothesis, label in zip(cols["sentence1"], cols["sentence2"], cols["label"]):
                handle.write(json.dumps({"premise": premise, "claim": hypothesis, "gold": names[label]}) + "\n")
    files = dict(train_file=str(tmp_path / "train.jsonl"), validation_file=str(tmp_path / "dev.jsonl"))
    inferred = load_splits(DataArguments(**files, text_column_names="premise,claim", label_column_name="gold"))
    assert inferred.task.label_names == names  # sorted strings happen to be the Hub's id order
    assert inferred["test"]["label"] == preset["test"]["label"]
    assert inferred["heldout"]["idx"] == preset["heldout"]["idx"]


def test_sweep_refuses_bad_data_before_writing_anything(tmp_path, tiny_bert_dir, cli_env):
    from sweep_helpers import SWEEP_SCRIPT

    bad = write_csv(tmp_path / "bad.csv", [[1, "t", "b"], ["", "u", "c"]] * 60)
    out = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, str(SWEEP_SCRIPT), "--model", str(tiny_bert_dir), "--train_file", str(bad),
         "--text_column_names", "title", "--output_dir", str(out)],
        env=cli_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {bad}: column 'label', row 2: empty or NaN label ''"
    assert not out.exists()


def test_t5_prompt_of_a_user_task_is_its_recorded_prompt():
    from hf_soup.models import t5_prompt_encoder

    task = Task.from_dict(make_task("Support Tickets", ("subject", "body"), ("bug", "billing")).to_dict())
    encode = t5_prompt_encoder(task, lambda prompts, **_: {"input_ids": prompts}, 64)
    encoded = encode({"subject": ["Login fails"], "body": ["since Monday"]})
    assert encoded["input_ids"] == ["support_tickets subject: Login fails body: since Monday"]


def write_text_csv(path, rows, header=("text", "label")):
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
    return write_text_csv(tmp_path / "train.csv", rows(300))


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
        (lambda d: write_text_csv(d / "t.csv", [["a", ""]] * 20), "empty or NaN label"),
        (lambda d: write_text_csv(d / "t.csv", [["a"]] * 20, header=("text",)), "missing column 'label'"),
        (lambda d: write_text_csv(d / "t.csv", []), "no rows"),
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
    test = write_text_csv(tmp_path / "test.csv", [[r[0], r[1]] for r in rows(40)], header=("text", "gold"))
    line = one_line_error(["--train_file", train_file, flag, test], capsys)
    assert "test.csv" in line and "no label column 'label'" in line and "text, gold" in line


def test_max_test_samples_is_a_seeded_subset_not_the_first_rows(train_file, tmp_path):
    sorted_by_label = sorted(rows(200, start=1000), key=lambda r: r[1])  # every "neg" first
    test = write_text_csv(tmp_path / "test.csv", sorted_by_label)
    args = DataArguments(train_file=str(train_file), test_file=str(test), max_test_samples=40)
    splits = load_splits(args)
    labels = splits["test"]["label"]
    assert len(labels) == 40 and len(set(labels)) == 2
    assert load_splits(args)["test"]["idx"] == splits["test"]["idx"]  # the same rows every time


def _jsonl_rows(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_a_task_named_after_a_versioned_split_file_is_the_dataset_name(tmp_path):
    """`snli_1.0/snli_1.0_dev.jsonl` names the task "snli" (not "snli_1"): the card, the run folders and
    the T5 prompt all read this one name."""
    folder = tmp_path / "snli_1.0"
    folder.mkdir()
    records = [{"sentence1": f"a man {i}", "sentence2": f"a dog {i}", "gold_label": "ab"[i % 2]} for i in range(300)]
    train = _jsonl_rows(folder / "snli_1.0_dev.jsonl", records)
    splits = load_splits(DataArguments(train_file=str(train), label_column_name="gold_label"))
    assert splits.task.name == "snli" and splits.task.prompt == "snli"


def test_a_rare_class_is_named_with_its_share(tmp_path):
    labelled = [[f"sentence {i}", "pos" if i % 2 else "neg"] for i in range(400)]
    labelled += [[f"unsure {i}", "-"] for i in range(4)]  # 4 of 404 rows: 1.0 %
    train = write_text_csv(tmp_path / "train.csv", labelled)
    splits = load_splits(DataArguments(train_file=str(train)))
    assert len(splits.warnings) == 1, splits.warnings
    assert "train.csv" in splits.warnings[0] and "label '-' has 4 of 404 training rows (1.0%)" in splits.warnings[0]
    from hf_soup.data import summary_lines

    assert any(line.startswith("warning: ") and "'-'" in line for line in summary_lines(splits))
    balanced = load_splits(DataArguments(train_file=str(write_text_csv(tmp_path / "b.csv", labelled[:400]))))
    assert balanced.warnings == []


def test_a_malformed_json_line_is_named_by_its_line_number(tmp_path, capsys):
    good = [json.dumps({"text": f"row {i}", "label": "ab"[i % 2]}) for i in range(200)]
    bad = tmp_path / "train.jsonl"
    bad.write_text("\n".join([*good[:2], '{"text": "row 2", "label": "a"', *good[3:]]) + "\n")
    line = one_line_error(["--train_file", bad], capsys)
    assert f"{bad}:3: not valid JSON" in line and "position" not in line, line
    document = tmp_path / "doc.json"  # a pretty-printed JSON document: json's own line number
    document.write_text('[\n  {"text": "a", "label": "x"},\n  {"text": "b" "label": "y"}\n]\n')
    line = one_line_error(["--train_file", document], capsys)
    assert f"{document}:3: not valid JSON" in line, line


def test_run_classification_sample_flags_mean_max_test_samples(tmp_path):
    """`--max_eval_samples` / `--max_predict_samples` (run_classification.py) are accepted by the data,
    sweep and merge parsers and in a sweep's YAML, as `--max_test_samples`."""
    from transformers import HfArgumentParser

    from hf_soup.merge import parse_args as merge_parse_args
    from hf_soup.sweep.arguments import ARGUMENT_TYPES, parse_sweep_args

    parser = HfArgumentParser(DataArguments)
    for flag in ("--max_eval_samples", "--max-eval-samples", "--max_predict_samples", "--max-predict-samples"):
        (parsed,) = parser.parse_args_into_dataclasses(["--train_file", "t.csv", flag, "40"])
        assert parsed.max_test_samples == 40, flag
    _, merge_data = merge_parse_args(
        ["--ingredients", "a", "b", "--output", str(tmp_path / "soup"), "--max_eval_samples", "7"]
    )
    assert merge_data.max_test_samples == 7
    config = tmp_path / "grid.yaml"
    config.write_text("task: rte\nmax_predict_samples: 9\n")
    swept = parse_sweep_args(["--config", str(config), "--output_dir", str(tmp_path / "runs")], ARGUMENT_TYPES)
    data = next(p for p in swept.arguments if isinstance(p, DataArguments))
    assert data.max_test_samples == 9
    flagged = parse_sweep_args(
        ["--task", "rte", "--output_dir", str(tmp_path), "--max_predict_samples", "5"], ARGUMENT_TYPES
    )
    assert next(p for p in flagged.arguments if isinstance(p, DataArguments)).max_test_samples == 5


def test_a_heldout_file_goes_with_a_glue_folder(tmp_path, capsys):
    """`--task rte --glue_dir DIR --heldout_file F`: train and test from GLUE's folder, held-out from F
    (its labels as names or ids), nothing carved from train."""
    from sweep_helpers import write_tiny_rte

    glue = write_tiny_rte(tmp_path / "glue")
    names = ("entailment", "not_entailment")
    heldout = write_csv(
        tmp_path / "heldout.csv",
        [[f"a cat sat {i}", f"a cat {i}", names[i % 2]] for i in range(30)],
        header=("sentence1", "sentence2", "label"),
    )
    splits = load_splits(DataArguments(task="rte", glue_dir=str(glue), heldout_file=str(heldout)))
    assert len(splits["heldout"]) == 30 and len(splits["train"]) == 120 and splits.heldout["from"] == "file"
    assert splits["heldout"]["label"] == [i % 2 for i in range(30)]
    ids = write_csv(
        tmp_path / "ids.csv", [["a", "b", str(i % 2)] for i in range(30)], header=("sentence1", "sentence2", "label")
    )
    by_id = load_splits(DataArguments(task="rte", glue_dir=str(glue), heldout_file=str(ids)))
    assert by_id["heldout"]["label"] == splits["heldout"]["label"]
    assert cli_main(data_main, ["--task", "rte", "--glue_dir", str(glue), "--heldout_file", str(heldout)]) == 0
    capsys.readouterr()
    no_pair = write_csv(tmp_path / "single.csv", [["a cat", "entailment"]] * 5, header=("sentence1", "label"))
    line = one_line_error(["--task", "rte", "--glue_dir", glue, "--heldout_file", no_pair], capsys)
    assert "single.csv" in line and "missing column 'sentence2'" in line, line


def test_a_preset_the_hub_cannot_serve_names_the_local_flags():
    # conftest sets HF_DATASETS_OFFLINE=1: nyu-mll/glue is not cached
    with pytest.raises(
        SoupError, match=r"task sst2: .*pass --glue_dir DIR \(GLUE's TSV folders\) or --train_file FILE"
    ):
        load_splits(DataArguments(task="sst2"))
