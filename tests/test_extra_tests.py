"""Extra test sets (--extra_test_files) on tiny random ingredients.

What is checked: every row is scored on each set, and those scores are what a plain evaluation
loop (from_pretrained, tokenizer, argmax) gives for the ingredients, the written soup and the
soft-vote ensemble; each soup's gain on each set has its interval; the predictions file carries
`<row>@<NAME>` logits; the card names each set in its model-index; bad input is one line, exit 2,
nothing written.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from soup_factory import run_merge
from test_data_reload import ingredients_for, write_csv

from hf_soup.data import DataArguments, load_splits

MAX_LENGTH = 64  # soup_factory.ingredient_record's max_seq_length


@pytest.fixture
def sweep(tmp_path, tokenizer_dir):
    (tmp_path / "data").mkdir()
    words = ["cat", "dog", "mat", "sat", "ran", "is", "not", "the", "a", "on"]
    rng = np.random.default_rng(0)

    def rows(count: int, salt: str) -> list[list[str]]:
        return [
            [("a", "b", "c")[int(rng.integers(3))], " ".join(rng.choice(words, size=int(rng.integers(2, 9)))) + salt]
            for _ in range(count)
        ]

    train = write_csv(tmp_path / "data" / "train.csv", rows(90, ""))
    test = write_csv(tmp_path / "data" / "test.csv", rows(24, ""))
    splits = load_splits(DataArguments(train_file=str(train), test_file=str(test), heldout_size=20))
    runs = ingredients_for(splits, tmp_path / "runs", tokenizer_dir, seeds=(1, 2, 3))
    ood = write_csv(tmp_path / "ood.csv", rows(40, " mat"))
    far = write_csv(tmp_path / "far.tsv", rows(30, " the dog"), header=("label", "text"))
    far.write_text(far.read_text().replace(",", "\t"))
    return runs, ood, far


def plain_logits(folder, texts: list[str]) -> np.ndarray:
    """An evaluation loop that shares nothing with the merge's scorer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), 7):
            batch = tokenizer(
                texts[start : start + 7], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt"
            )
            out.append(model(**batch).logits.numpy())
    return np.concatenate(out)


def read_csv(path, sep=","):
    import pandas as pd

    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    return list(frame["text"]), list(frame["label"])


def test_extra_sets_match_a_plain_evaluation_loop(sweep, tmp_path, capsys):
    runs, ood, far = sweep
    out_dir, predictions = tmp_path / "soup", tmp_path / "pred.npz"
    code, out, err = run_merge(
        [
            "--ingredients", runs, "--recipe", "greedy", "--output", out_dir, "--predictions_file", predictions,
            "--extra_test_files", f"ood={ood}", f"far={far}",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    soup = json.loads((out_dir / "soup.json").read_text())
    assert set(soup["extra_tests"]) == {"ood", "far"}
    assert soup["extra_tests"]["ood"]["rows"] == 40 and soup["extra_tests"]["far"]["file"] == "far.tsv"
    assert str(tmp_path) not in json.dumps(soup["extra_tests"])  # no local path published

    saved = np.load(predictions)
    for name, path, sep in (("ood", ood, ","), ("far", far, "\t")):
        texts, labels = read_csv(path, sep)
        from transformers import AutoConfig

        label2id = AutoConfig.from_pretrained(out_dir).label2id
        references = np.asarray([label2id[label] for label in labels])
        np.testing.assert_array_equal(saved[f"references@{name}"], references)
        per_ingredient = {}
        for row in soup["ingredients"]:
            logits = plain_logits(runs / row["name"], texts)
            per_ingredient[row["name"]] = logits
            expected = float(np.mean(logits.argmax(-1) == references))
            assert row[f"extra:{name}"]["accuracy"] == pytest.approx(expected), (name, row["name"])
        soup_logits = plain_logits(out_dir, texts)
        assert soup["results"]["soup"][f"extra:{name}"]["accuracy"] == pytest.approx(
            float(np.mean(soup_logits.argmax(-1) == references))
        )
        np.testing.assert_allclose(saved[f"greedy@{name}"], soup_logits, atol=1e-4)
        best = soup["results"]["best_single"]["name"]
        np.testing.assert_allclose(saved[f"best_single@{name}"], per_ingredient[best], atol=1e-4)
        mean_probability = np.mean([torch.softmax(torch.tensor(x), -1).numpy() for x in per_ingredient.values()], 0)
        assert soup["results"]["ensemble"][f"extra:{name}"]["accuracy"] == pytest.approx(
            float(np.mean(mean_probability.argmax(-1) == references))
        )
        for key in ("uniform", "greedy", "ensemble"):
            gain = soup["results"][key]["extra_test_gains"][name]
            difference = (
                soup["results"][key][f"extra:{name}"]["primary"]
                - soup["results"]["best_single"][f"extra:{name}"]["primary"]
            )
            assert gain["estimate"] == pytest.approx(difference) and gain["low"] <= gain["estimate"] <= gain["high"]
        assert "extra_test_gains" not in soup["results"]["best_single"]
        assert soup["results"]["soup"]["extra_test_gains"][name] == soup["results"]["greedy"]["extra_test_gains"][name]
    assert {"references", "greedy", "best_single"} <= set(saved.files)  # the test split's arrays, as before
    assert "extra test sets (ood: 40 rows, far: 30 rows)" in out and "never used to choose" in out

    card = (out_dir / "README.md").read_text()
    assert "### Extra test sets" in card and "ood (40 rows)" in card
    assert "name: ood (ood.csv; extra test set)" in card and "name: far (far.tsv; extra test set)" in card


def test_extra_sets_choose_nothing(sweep, tmp_path, capsys):
    """The same merge with and without extra sets writes the same soup (same kept ingredients, same weights)."""
    runs, ood, _ = sweep
    code, _, err = run_merge(["--ingredients", runs, "--output", tmp_path / "a"], capsys)
    assert code == 0, err
    code, _, err = run_merge(
        ["--ingredients", runs, "--output", tmp_path / "b", "--extra_test_files", f"x={ood}"], capsys
    )
    assert code == 0, err
    a, b = (json.loads((tmp_path / s / "soup.json").read_text()) for s in "ab")
    assert [i["weight"] for i in a["ingredients"]] == [i["weight"] for i in b["ingredients"]]
    assert a["results"]["soup"]["test"] == b["results"]["soup"]["test"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: [f"x{d / 'ood.csv'}"], "expected NAME=PATH or NAME=org/dataset[:split]"),
        (lambda d: [f"x={d / 'ood.csv'}", f"x={d / 'ood.csv'}"], "the name 'x' is given twice"),
        (lambda d: [f"x={d / 'missing.csv'}"], "missing.csv: file not found"),
        (lambda d: [f"x={d / 'nocol.csv'}"], "missing column 'text'"),
        (lambda d: [f"x={d / 'badlabel.csv'}"], "label 'z' never appears in the training labels"),
        (lambda d: [f"x={d / 'empty.csv'}"], "empty file"),
        (lambda d: [f"x={d / 'header.csv'}"], "no rows"),
        (lambda d: ["x=not a dataset"], "neither a csv/tsv/json/jsonl/parquet file nor a Hub dataset id"),
    ],
)
def test_bad_extra_sets_are_one_line_exit_2_nothing_written(sweep, tmp_path, capsys, make, message):
    runs = sweep[0]
    write_csv(tmp_path / "nocol.csv", [["a", "x"]], header=("label", "sentence"))
    write_csv(tmp_path / "badlabel.csv", [["a", "x"], ["z", "y"]])
    (tmp_path / "empty.csv").write_text("")
    write_csv(tmp_path / "header.csv", [])
    code, _, err = run_merge(
        ["--ingredients", runs, "--output", tmp_path / "s", "--extra_test_files", *make(tmp_path)], capsys
    )
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "s").exists()
