"""The merge's data loading (hf_soup.data.load_recorded) on tiny random ingredients.

What is checked: the data description in ingredient.json is enough (no flags); files that moved are
repointed by the same flags and must keep their sha256; format-1 records (task name + split source,
the old fingerprint) still merge; every test split is scored (MNLI's mismatched); held-out that may
be training data is flagged, and an explicit held-out is checked row by row against train.
"""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from soup_factory import ingredient_record, make_ingredient, run_merge, tiny_classifier

from hf_soup.data import DataArguments, load_splits
from hf_soup.errors import SoupError
from hf_soup.tasks import get_task


def write_csv(path, rows, header=("label", "text")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def ingredients_for(splits, root, tokenizer_dir, *, seeds=(1, 2), with_data=True):
    """Tiny classifiers for `splits.task`, recorded the way the sweep records them."""
    from transformers import AutoTokenizer

    task = splits.task
    vocab = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    for seed in seeds:
        name = f"lr1e-05_seed{seed}"
        extra = {"data": splits.description()} if with_data else {}
        record = ingredient_record(
            name, split=splits.describe(), seed=seed, task=task.name, primary_metric=task.primary_metric, **extra
        )
        model = tiny_classifier(vocab, noise_seed=seed, num_labels=task.num_labels, id2label=task.id2label)
        make_ingredient(root / name, tokenizer_dir, noise_seed=seed, record=record, model=model)
    return root


@pytest.fixture
def csv_data(tmp_path):
    (tmp_path / "data").mkdir()
    train = write_csv(
        tmp_path / "data" / "train.csv", [[("b", "a", "c")[i % 3], f"the cat sat {i}"] for i in range(90)]
    )
    test = write_csv(tmp_path / "data" / "test.csv", [[("a", "b", "c")[i % 3], f"a dog ran {i}"] for i in range(24)])
    return train, test


def test_recorded_files_need_no_flags_and_moved_files_are_repointed_and_checked(
    csv_data, tmp_path, tokenizer_dir, capsys
):
    train, test = csv_data
    splits = load_splits(DataArguments(train_file=str(train), test_file=str(test), heldout_size=20))
    runs = ingredients_for(splits, tmp_path / "runs", tokenizer_dir)
    code, out, err = run_merge(["--ingredients", runs, "--recipe", "uniform", "--output", tmp_path / "s1"], capsys)
    assert code == 0, err
    soup = json.loads((tmp_path / "s1" / "soup.json").read_text())
    assert soup["heldout_disjoint"] is True and soup["data"]["task"]["label_values"] == ["a", "b", "c"]
    assert "test = the dataset's 'test' split" in out

    moved = tmp_path / "moved"
    shutil.move(train.parent, moved)
    code, _, err = run_merge(["--ingredients", runs, "--output", tmp_path / "s2"], capsys)
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "s2").exists()
    assert f"{train}: not found; the ingredients were trained on this train file" in err and "--train_file" in err
    flags = ["--train_file", moved / "train.csv", "--test_file", moved / "test.csv"]
    code, _, err = run_merge(["--ingredients", runs, "--output", tmp_path / "s2", *flags], capsys)
    assert code == 0, err

    write_csv(moved / "test.csv", [["a", "changed"]] * 24)  # the same path, other bytes
    code, _, err = run_merge(["--ingredients", runs, "--output", tmp_path / "s3", *flags], capsys)
    assert (
        code == 2 and "test.csv: sha256" in err and "differs from the test file the ingredients were trained on" in err
    )
    code, _, err = run_merge(
        ["--ingredients", runs, "--output", tmp_path / "s3", *flags, "--text_column_names", "x"], capsys
    )
    assert code == 2 and "--text_column_names: the ingredients record their data" in err


def test_explicit_heldout_is_checked_against_train(csv_data, tmp_path, tokenizer_dir, capsys):
    train, test = csv_data
    splits = load_splits(DataArguments(train_file=str(train), test_file=str(test), heldout_size=20))
    runs = ingredients_for(splits, tmp_path / "runs", tokenizer_dir)
    fresh = write_csv(tmp_path / "fresh.csv", [["a", f"never seen {i}"] for i in range(12)])
    code, _, err = run_merge(["--ingredients", runs, "--output", tmp_path / "s1", "--heldout_file", fresh], capsys)
    assert code == 0, err
    soup = json.loads((tmp_path / "s1" / "soup.json").read_text())
    assert (
        soup["heldout_disjoint"] is True
        and "none of them appears in the training split" in soup["heldout_disjoint_reason"]
    )
    assert soup["split"]["heldout_size"] == 12
    leaky = write_csv(tmp_path / "leaky.csv", [["b", "the cat sat 0"], ["a", "the cat sat 1"], ["c", "new"]])
    code, out, err = run_merge(["--ingredients", runs, "--output", tmp_path / "s2", "--heldout_file", leaky], capsys)
    assert code == 0, err
    soup = json.loads((tmp_path / "s2" / "soup.json").read_text())
    assert soup["heldout_disjoint"] is False and soup["heldout_disjoint_reason"].startswith("2 of the 3 held-out rows")
    assert "warning: held-out may overlap the ingredients' training data: 2 of the 3" in out
    assert "Held-out may overlap the training data" in (tmp_path / "s2" / "README.md").read_text()


def test_callback_ingredients_without_a_split_are_flagged(csv_data, tmp_path, tokenizer_dir, capsys):
    train, test = csv_data
    splits = load_splits(DataArguments(train_file=str(train), test_file=str(test), heldout_size=20))
    runs = ingredients_for(splits, tmp_path / "runs", tokenizer_dir, with_data=False)
    for path in runs.iterdir():  # what IngredientExportCallback(task=...) without split= writes
        record = json.loads((path / "ingredient.json").read_text())
        record["split"] = {}
        (path / "ingredient.json").write_text(json.dumps(record))
    code, _, err = run_merge(["--ingredients", runs, "--output", tmp_path / "s"], capsys)
    assert code == 2 and "ingredient.json records no data description, so the data is unknown" in err
    flags = ["--train_file", train, "--test_file", test, "--heldout_size", 20]
    code, _, err = run_merge(["--ingredients", runs, "--output", tmp_path / "s", *flags], capsys)
    assert code == 0, err
    soup = json.loads((tmp_path / "s" / "soup.json").read_text())
    assert soup["heldout_disjoint"] is False and "records no held-out split" in soup["heldout_disjoint_reason"]


def test_plain_folders_labels_must_match_the_data(csv_data, tmp_path, tokenizer_dir, capsys):
    train, test = csv_data
    plain = [make_ingredient(tmp_path / f"plain{i}", tokenizer_dir, noise_seed=i, with_record=False) for i in (1, 2)]
    flags = ["--train_file", train, "--test_file", test, "--heldout_size", 20]
    code, _, err = run_merge(["--ingredients", *plain, "--output", tmp_path / "s", *flags], capsys)
    assert code == 2 and "its head is fine-tuned for labels ['entailment', 'not_entailment']" in err
    assert not (tmp_path / "s").exists()


def test_format_1_ingredients_of_main_still_merge(glue_dir, tmp_path, tokenizer_dir, capsys):
    """An ingredient.json as the sweep wrote it before the data description: task + split.source + the old
    fingerprint (hash of train content, seed and count)."""
    splits = load_splits(DataArguments(task="rte", glue_dir=str(glue_dir), heldout_size=48, max_test_samples=40))
    legacy = {
        "source": f"local:{glue_dir.resolve()}", "fingerprint": splits.legacy_fingerprint(), "heldout_seed": 0,
        "heldout_size": 48, "train_size": 2442, "test_size": 40, "max_train_samples": None, "max_test_samples": 40,
    }  # fmt: skip
    assert legacy["fingerprint"] != splits.fingerprint
    for seed in (1, 2):
        name = f"old{seed}"
        make_ingredient(
            tmp_path / "runs" / name,
            tokenizer_dir,
            noise_seed=seed,
            record=ingredient_record(name, split=legacy, seed=seed),
        )
    code, _, err = run_merge(["--ingredients", tmp_path / "runs", "--output", tmp_path / "s"], capsys)
    assert code == 0, err
    soup = json.loads((tmp_path / "s" / "soup.json").read_text())
    assert soup["heldout_disjoint"] is True and soup["split"]["heldout_size"] == 48
    assert soup["data"]["task"]["preset"] is True


MNLI_HEADER = "index\tsentence1\tsentence2\tgold_label\n"


def test_every_test_split_is_scored_mnli_mismatched(tmp_path, tokenizer_dir, capsys):
    from huggingface_hub import ModelCard

    folder = tmp_path / "glue" / "MNLI"
    folder.mkdir(parents=True)
    labels = ("entailment", "neutral", "contradiction")
    for name, n in (("train.tsv", 90), ("dev_matched.tsv", 15), ("dev_mismatched.tsv", 12)):
        rows = "".join(f"{i}\tthe cat {name} {i}\ta dog {i}\t{labels[i % 3]}\n" for i in range(n))
        (folder / name).write_text(MNLI_HEADER + rows)
    splits = load_splits(DataArguments(task="mnli", glue_dir=str(tmp_path / "glue"), heldout_size=20))
    assert splits.task is get_task("mnli") and set(splits.splits) == {"train", "heldout", "test", "test_mismatched"}
    runs = ingredients_for(splits, tmp_path / "runs", tokenizer_dir)
    code, out, err = run_merge(["--ingredients", runs, "--recipe", "greedy", "--output", tmp_path / "s"], capsys)
    assert code == 0, err
    soup = json.loads((tmp_path / "s" / "soup.json").read_text())
    for row in ("soup", "best_single", "uniform", "greedy", "ensemble"):
        assert set(soup["results"][row]) >= {"heldout", "test", "test_mismatched"}, row
    assert all("test_mismatched" in ingredient for ingredient in soup["ingredients"])
    assert soup["split"]["test_sizes"] == {"test": 15, "test_mismatched": 12}
    assert " mismatch " in out.splitlines()[1]  # a column of the printed table (test_mismatched)
    card = ModelCard.load(tmp_path / "s" / "README.md")
    splits_on_card = {(r.dataset_split, r.metric_type) for r in card.data.eval_results}
    assert splits_on_card == {("validation_matched", "accuracy"), ("validation_mismatched", "accuracy")}
    assert card.data.datasets == ["nyu-mll/glue"]
    mismatched = next(r for r in card.data.eval_results if r.dataset_split == "validation_mismatched")
    assert mismatched.metric_value == soup["results"]["soup"]["test_mismatched"]["accuracy"]


def test_load_recorded_refuses_a_task_that_is_not_the_recorded_one(csv_data, tmp_path):
    from hf_soup.data import load_recorded

    train, test = csv_data
    splits = load_splits(DataArguments(train_file=str(train), test_file=str(test), heldout_size=20))
    record = {"task": splits.task.name, "split": splits.describe(), "data": splits.description()}
    with pytest.raises(SoupError, match=f"--task rte: the ingredients were fine-tuned on '{splits.task.name}'"):
        load_recorded(record, DataArguments(task="rte"), "x/ingredient.json")
    again, check = load_recorded(record, DataArguments(), "x/ingredient.json")
    assert again.fingerprint == splits.fingerprint and again.task == splits.task and check.disjoint


def test_regression_on_your_data_merges_with_correlations(tmp_path, tokenizer_dir, capsys):
    train = write_csv(tmp_path / "prices.csv", [[f"{(i % 7) * 0.5:.2f}", f"the cat sat {i}"] for i in range(90)])
    splits = load_splits(DataArguments(train_file=str(train), heldout_size=20, test_split_size=20))
    assert splits.task.is_regression and splits.task.metrics == ("pearson", "spearman")
    runs = ingredients_for(splits, tmp_path / "runs", tokenizer_dir)
    code, out, err = run_merge(["--ingredients", runs, "--recipe", "greedy", "--output", tmp_path / "s"], capsys)
    assert code == 0, err
    soup = json.loads((tmp_path / "s" / "soup.json").read_text())
    assert soup["primary_metric"] == "pearson" and set(soup["results"]["soup"]["test"]) == {
        "pearson", "spearman", "primary", "loss",
    }  # fmt: skip
    assert soup["results"]["soup"]["test"]["primary"] == soup["results"]["soup"]["test"]["pearson"]
    assert "test = rows carved from train" in out


def test_a_merge_keeps_the_recorded_max_seq_length(tmp_path):
    from hf_soup.data import load_recorded
    from hf_soup.merge import MergeDataArguments

    train = write_csv(tmp_path / "train.csv", [["pos" if i % 2 else "neg", f"sentence number {i}"] for i in range(300)])
    description = load_splits(DataArguments(train_file=str(train), max_seq_length=64)).description()
    splits, _ = load_recorded({"data": description}, MergeDataArguments(), "ingredient.json")
    assert splits.arguments["max_seq_length"] == 64
    splits, _ = load_recorded({"data": description}, MergeDataArguments(max_seq_length=32), "ingredient.json")
    assert splits.arguments["max_seq_length"] == 32


def test_a_callback_ingredient_naming_a_glue_task_is_not_scored_on_the_hubs_copy_unasked(tmp_path):
    """IngredientExportCallback(task="rte") without splits= records the task, not its rows: the merge
    asks for the data (naming --glue_dir / --train_file) instead of fetching nyu-mll/glue; given
    `--glue_dir`, it scores there and says the ingredients did not record their data."""
    from sweep_helpers import write_tiny_rte

    from hf_soup.data import load_recorded
    from hf_soup.merge import MergeDataArguments

    glue = write_tiny_rte(tmp_path / "glue")
    record = {"task": "rte", "split": {}}
    with pytest.raises(SoupError) as refused:
        load_recorded(record, MergeDataArguments(), "runs/a/ingredient.json")
    message = str(refused.value)
    assert message.startswith("runs/a/ingredient.json: records the GLUE task 'rte' but not its data"), message
    assert "--glue_dir DIR" in message and "--train_file FILE" in message and "--task rte" in message
    # `--task rte` asks for the Hub's copy; offline (conftest), the error still names the local flags
    with pytest.raises(SoupError, match=r"pass --glue_dir DIR \(GLUE's TSV folders\) or --train_file FILE"):
        load_recorded(record, MergeDataArguments(task="rte"), "runs/a/ingredient.json")
    splits, check = load_recorded(record, MergeDataArguments(glue_dir=str(glue)), "runs/a/ingredient.json")
    assert splits.source.startswith("local:") and not check.disjoint
    assert any("do not record their data" in note for note in splits.notes), splits.notes
