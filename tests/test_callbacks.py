"""The Trainer callbacks inside real (tiny) Trainer runs."""

import pytest
import torch
from soup_factory import tiny_classifier

from hf_soup.callbacks import CheckpointAveragingCallback, IngredientExportCallback
from hf_soup.checkpoints import Checkpoint, find_ingredients
from hf_soup.errors import SoupError
from hf_soup.ingredient import read_ingredient
from hf_soup.metrics import make_compute_metrics
from hf_soup.tasks import get_task

TASK = get_task("rte")


@pytest.fixture(scope="module")
def toy_data(tokenizer_dir):
    """Tokenised sentence pairs with a learnable rule (label = whether the pair shares a word)."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    words = ["cat", "dog", "mat", "sat", "the", "a"]
    rows = {"sentence1": [], "sentence2": [], "label": []}
    for i in range(48):
        first, second = words[i % 6], words[(i * 5 + i // 6) % 6]
        rows["sentence1"].append(f"{first} {words[(i + 2) % 6]}")
        rows["sentence2"].append(second)
        rows["label"].append(0 if second in rows["sentence1"][-1] else 1)
    encoded = Dataset.from_dict(rows).map(
        lambda b: tokenizer(b["sentence1"], b["sentence2"], truncation=True, max_length=16),
        batched=True,
        remove_columns=["sentence1", "sentence2"],
    )
    return tokenizer, encoded


def _trainer(tmp_path, toy_data, callbacks, **overrides):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    tokenizer, data = toy_data
    settings = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        learning_rate=1e-3,
        save_strategy="steps",
        save_steps=1,
        save_total_limit=5,
        eval_strategy="no",
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    model = overrides.pop("model", None) or tiny_classifier(len(tokenizer))
    settings.update(overrides)
    return Trainer(
        model=model,
        args=TrainingArguments(**settings),
        train_dataset=data,
        eval_dataset={"heldout": data.select(range(16)), "test": data.select(range(16, 32))},
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=make_compute_metrics(TASK),
        callbacks=callbacks,
    )


def test_checkpoint_averaging_callback_averages_the_last_n(tmp_path, toy_data):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    callback = CheckpointAveragingCallback(last_n=2, load_into_model=True)
    trainer = _trainer(tmp_path, toy_data, [callback])
    trainer.train()
    out = tmp_path / "out"
    assert callback.averaged_dir == out / "averaged-last-2"
    last = [load_file(out / f"checkpoint-{step}" / "model.safetensors") for step in (2, 3)]
    averaged = load_file(callback.averaged_dir / "model.safetensors")
    for name in last[0]:
        assert torch.equal(averaged[name], ((last[0][name].double() + last[1][name].double()) / 2).float()), name
    reloaded = AutoModelForSequenceClassification.from_pretrained(callback.averaged_dir)
    assert torch.equal(reloaded.classifier.weight, averaged["classifier.weight"])
    assert torch.equal(trainer.model.classifier.weight, averaged["classifier.weight"])  # load_into_model
    assert (callback.averaged_dir / "tokenizer.json").is_file()
    with pytest.raises(SoupError, match="already exists"):  # refused at train BEGIN, before any training
        _trainer(tmp_path, toy_data, [CheckpointAveragingCallback(last_n=2)]).train()


def test_ingredient_export_callback_writes_a_mergeable_ingredient(tmp_path, toy_data):
    export_dir = tmp_path / "runs" / "lr1e-3_seed0"
    callback = IngredientExportCallback(
        str(export_dir),
        task="rte",
        base_model="tiny-bert",
        head_init_seed=0,
        hyperparameters={"learning_rate": 1e-3},
        split={"fingerprint": "toy"},
    )
    trainer = _trainer(tmp_path, toy_data, [callback], eval_strategy="steps", eval_steps=3, save_strategy="no")
    trainer.train()
    record = read_ingredient(export_dir)
    assert record["metrics"]["heldout"]["primary"] == record["metrics"]["heldout"]["accuracy"]
    assert "primary" in record["metrics"]["test"] and "runtime" not in record["metrics"]["test"]
    assert record["seed"] == 0 and record["train"]["steps"] == 3 and record["run_id"] == "lr1e-3_seed0"
    assert find_ingredients([str(tmp_path / "runs")]) == [export_dir]
    checkpoint = Checkpoint(export_dir)
    assert torch.equal(checkpoint["classifier.weight"], trainer.model.classifier.weight.detach())
    assert checkpoint.tokenizer_files()


def test_export_waits_for_an_evaluation_after_training(tmp_path, toy_data):
    export_dir = tmp_path / "late"
    callback = IngredientExportCallback(str(export_dir), task="rte", base_model="tiny-bert", head_init_seed=0)
    trainer = _trainer(tmp_path, toy_data, [callback], save_strategy="no", max_steps=1)
    trainer.train()
    assert not export_dir.exists()  # no held-out metrics yet
    trainer.evaluate()
    assert read_ingredient(export_dir)["metrics"]["heldout"]["primary"] >= 0


def test_export_without_the_primary_metric_is_an_error(tmp_path, toy_data):
    """compute_metrics returning "acc" instead of "accuracy": an error naming both, nothing written."""
    from transformers import Trainer

    def acc_only(prediction):
        return {"acc": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

    export_dir = tmp_path / "acc"
    callback = IngredientExportCallback(str(export_dir), task="rte", base_model="tiny-bert", head_init_seed=0)
    trainer = _trainer(tmp_path, toy_data, [callback], save_strategy="no", max_steps=1, eval_strategy="steps",
                       eval_steps=1)  # fmt: skip
    assert isinstance(trainer, Trainer)
    trainer.compute_metrics = acc_only  # what the Trainer calls at each evaluation
    with pytest.raises(SoupError, match=r"held-out metrics \(acc, loss\) lack 'accuracy'.*nothing exported"):
        trainer.train()
    assert not export_dir.exists()


def test_export_with_other_label_names_is_an_error_naming_both(tmp_path, toy_data):
    tokenizer, _ = toy_data
    export_dir = tmp_path / "labels"
    callback = IngredientExportCallback(str(export_dir), task="rte", base_model="tiny-bert", head_init_seed=0)
    model = tiny_classifier(len(tokenizer), id2label={0: "negative", 1: "positive"})
    trainer = _trainer(tmp_path, toy_data, [callback], save_strategy="no", max_steps=1, eval_strategy="steps",
                       eval_steps=1, model=model)  # fmt: skip
    with pytest.raises(
        SoupError, match=r"id2label \{0: 'negative', 1: 'positive'\} is not the task's \{0: 'entailment'"
    ):
        trainer.train()
    assert not export_dir.exists()


def test_export_from_evaluate_records_the_test_pass_too(tmp_path, toy_data):
    """trainer.evaluate() runs held-out, then test: the ingredient must end with both."""
    export_dir = tmp_path / "late-test"
    callback = IngredientExportCallback(str(export_dir), task="rte", base_model="tiny-bert", head_init_seed=0)
    trainer = _trainer(tmp_path, toy_data, [callback], save_strategy="no", max_steps=1)
    trainer.train()
    metrics = trainer.evaluate()
    record = read_ingredient(export_dir)
    assert record["metrics"]["test"]["accuracy"] == metrics["eval_test_accuracy"]
    assert record["metrics"]["heldout"]["accuracy"] == metrics["eval_heldout_accuracy"]


def test_averaging_listed_first_exports_the_average_with_its_own_scores(tmp_path, toy_data):
    from safetensors.torch import load_file

    export_dir = tmp_path / "averaged"
    average = CheckpointAveragingCallback(last_n=2, load_into_model=True)
    export = IngredientExportCallback(str(export_dir), task="rte", base_model="tiny-bert", head_init_seed=0)
    trainer = _trainer(tmp_path, toy_data, [average, export], eval_strategy="steps", eval_steps=1)
    trainer.train()
    assert not export_dir.exists()  # the last evaluation scored the weights before averaging
    metrics = trainer.evaluate()  # scores the average
    record = read_ingredient(export_dir)
    assert record["metrics"]["heldout"]["loss"] == metrics["eval_heldout_loss"]
    assert record["metrics"]["test"]["loss"] == metrics["eval_test_loss"]
    exported, averaged = (
        load_file(export_dir / "model.safetensors"),
        load_file(average.averaged_dir / "model.safetensors"),
    )
    assert all(torch.equal(exported[name], averaged[name]) for name in averaged)


def test_averaging_listed_after_the_export_is_refused_before_training(tmp_path, toy_data):
    export_dir = tmp_path / "too-early"
    export = IngredientExportCallback(str(export_dir), task="rte", base_model="tiny-bert", head_init_seed=0)
    average = CheckpointAveragingCallback(last_n=2, load_into_model=True)
    trainer = _trainer(tmp_path, toy_data, [export, average], eval_strategy="steps", eval_steps=1)
    with pytest.raises(SoupError, match=r"CheckpointAveragingCallback.*after IngredientExportCallback.*list it before"):
        trainer.train()
    assert trainer.state.global_step == 0 and not export_dir.exists()


def test_load_best_model_at_end_exports_the_best_with_its_own_scores(tmp_path, toy_data):
    export_dir = tmp_path / "best"
    export = IngredientExportCallback(str(export_dir), task="rte", base_model="tiny-bert", head_init_seed=0)
    trainer = _trainer(tmp_path, toy_data, [export], eval_strategy="steps", eval_steps=1, max_steps=4,
                       load_best_model_at_end=True, metric_for_best_model="heldout_loss")  # fmt: skip
    trainer.train()
    best = min(
        (entry for entry in trainer.state.log_history if "eval_heldout_loss" in entry),
        key=lambda entry: entry["eval_heldout_loss"],
    )
    record = read_ingredient(export_dir)
    assert record["metrics"]["heldout"]["loss"] == best["eval_heldout_loss"]
    assert record["metrics"]["test"]["loss"] == next(
        e["eval_test_loss"]
        for e in trainer.state.log_history
        if e.get("step") == best["step"] and "eval_test_loss" in e
    )


@pytest.fixture(scope="module")
def csv_splits(tmp_path_factory, tokenizer_dir):
    """hf_soup splits of a sentence-pair CSV (held-out carved from train) and their tokenized rows."""
    import csv

    from transformers import AutoTokenizer

    from hf_soup.data import DataArguments, load_splits

    folder = tmp_path_factory.mktemp("pairs")
    words = ["cat", "dog", "mat", "sat", "the", "a", "red", "big", "sun", "sea"]
    with open(folder / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence1", "sentence2", "label"])
        for i in range(160):
            first = f"{words[i % 10]} {words[(i // 10) % 10]} n{i}"  # every row distinct
            second = words[(i * 3 + i // 10) % 10]
            writer.writerow([first, second, "entailment" if second in first.split() else "not_entailment"])
    splits = load_splits(
        DataArguments(train_file=str(folder / "train.csv"), text_column_names="sentence1,sentence2", heldout_size=32)
    )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)

    def tokenize(dataset):
        return dataset.map(
            lambda b: tokenizer(b["sentence1"], b["sentence2"], truncation=True, max_length=32),
            batched=True,
            remove_columns=["sentence1", "sentence2"],
        )

    return splits, tokenize


def _export_run(tmp_path, toy_data, csv_splits, name, train):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    splits, tokenize = csv_splits
    tokenizer, _ = toy_data
    export = IngredientExportCallback(str(tmp_path / "runs" / name), splits=splits, base_model="tiny-bert",
                                      head_init_seed=0)  # fmt: skip
    args = TrainingArguments(output_dir=str(tmp_path / "out" / name), max_steps=2, per_device_train_batch_size=16,
                             eval_strategy="steps", eval_steps=2, save_strategy="no", use_cpu=True,
                             report_to="none", disable_tqdm=True)  # fmt: skip
    Trainer(model=tiny_classifier(len(tokenizer)), args=args, train_dataset=train,
            eval_dataset={"heldout": tokenize(splits["heldout"]), "test": tokenize(splits["test"])},
            processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=make_compute_metrics(splits.task), callbacks=[export]).train()  # fmt: skip
    return tmp_path / "runs" / name


def test_training_rows_are_checked_against_splits_train(tmp_path, toy_data, csv_splits, capsys):
    import json

    from datasets import concatenate_datasets
    from soup_factory import run_merge

    splits, tokenize = csv_splits
    subset = _export_run(
        tmp_path, toy_data, csv_splits, "subset", tokenize(splits["train"].select(range(len(splits["train"]) // 2)))
    )
    assert read_ingredient(subset)["split"]["train_rows"]["verified"] is True
    texts = _export_run(tmp_path, toy_data, csv_splits, "texts", splits["train"].map(
        lambda b: toy_data[0](b["sentence1"], b["sentence2"]), batched=True))  # fmt: skip
    assert read_ingredient(texts)["split"]["train_rows"]["verified"] is True
    leaked = concatenate_datasets([splits["train"], splits["heldout"].select(range(5))])
    bad = _export_run(tmp_path, toy_data, csv_splits, "leaked", tokenize(leaked))
    rows = read_ingredient(bad)["split"]["train_rows"]
    assert (
        rows["verified"] is False and "5 of the" in rows["reason"] and "not rows of splits['train']" in rows["reason"]
    )

    code, out, err = run_merge(["--ingredients", subset, "--recipe", "uniform", "--output", tmp_path / "ok"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "ok" / "soup.json").read_text())["heldout_disjoint"] is True
    code, out, err = run_merge(
        ["--ingredients", subset, bad, "--recipe", "uniform", "--output", tmp_path / "s"], capsys
    )
    assert code == 0, err
    soup = json.loads((tmp_path / "s" / "soup.json").read_text())
    assert soup["heldout_disjoint"] is False and soup["heldout_disjoint_reason"].startswith("unverified: leaked")
    card = (tmp_path / "s" / "README.md").read_text()
    assert "carved from train before fine-tuning" not in card and "Held-out may overlap" in card
    assert "warning: held-out may overlap" in out
