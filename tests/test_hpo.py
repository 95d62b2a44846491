"""hf_soup.hpo: Trainer.hyperparameter_search (Optuna) trials as soup ingredients, on a tiny BERT."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from sweep_helpers import (
    ingredient_dirs,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    single_thread_env,
    tiny_flags,
    tiny_glue_fixture,  # noqa: F401 (fixture `tiny_glue`)
)

from hf_soup.errors import cli_main
from hf_soup.ingredient import read_ingredient
from hf_soup.merge import main as merge_main
from hf_soup.sweep import hpo
from hf_soup.sweep.cli import main as sweep_main

optuna = pytest.importorskip("optuna")


def _trials(storage: str, name: str) -> list:
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def test_three_trials_are_three_ingredients_that_the_merge_soups(tiny_bert_dir, tiny_glue, tmp_path, capsys):
    out = tmp_path / "pool"
    argv = [
        *tiny_flags(tiny_bert_dir, tiny_glue, out),
        "--grid", "learning_rate=loguniform:1e-4:1e-2", "seed=0", "--n_trials", "3", "--sampler_seed", "0",
    ]  # fmt: skip
    assert cli_main(hpo.main, argv) == 0, capsys.readouterr().err
    sweep = json.loads((out / "sweep.json").read_text())
    storage = f"sqlite:///{out / '.hpo' / 'optuna.db'}"
    assert sweep["search"]["storage"] == storage and sweep["search"]["study_name"] == f"hf_soup-{sweep['sweep_id']}"
    trials = _trials(storage, sweep["search"]["study_name"])
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3

    folders = ingredient_dirs(out)
    assert sorted(p.name for p in folders) == sorted(t.user_attrs["run_id"] for t in trials)
    for trial in trials:
        record = read_ingredient(out / trial.user_attrs["run_id"])
        assert record["hyperparameters"]["learning_rate"] == float(f"{trial.params['learning_rate']:.4g}")
        assert record["seed"] == 0 and record["head_init_seed"] == 42 and record["grid_axes"] == ["learning_rate"]
        assert record["search"]["trial"] == trial.number and record["search"]["backend"] == "optuna"
        assert trial.value == record["metrics"]["heldout"]["primary"]  # the trial's value: held-out, never test
        assert set(record["metrics"]) == {"heldout", "test"}
        assert record["split"]["fingerprint"] == sweep["shared"]["split_fingerprint"]  # the sweep's carve

    soup = tmp_path / "soup"
    assert cli_main(merge_main, ["--ingredients", str(out), "--recipe", "greedy", "--output", str(soup)]) == 0
    soup_record = json.loads((soup / "soup.json").read_text())
    assert len(soup_record["ingredients"]) == 3 and soup_record["results"]["greedy"]["kept"]


def test_a_trial_with_a_grid_points_values_is_that_points_ingredient_bit_for_bit(
    tiny_bert_dir, tiny_glue, tmp_path, capsys
):
    """Same head initialisation, data order, arguments and scores as the sweep: the trial IS the grid point."""
    grid = ["--grid", "learning_rate=1e-3,3e-3", "seed=1"]
    assert cli_main(sweep_main, [*tiny_flags(tiny_bert_dir, tiny_glue, tmp_path / "grid"), *grid]) == 0
    pool = tmp_path / "pool"
    argv = [*tiny_flags(tiny_bert_dir, tiny_glue, pool), *grid, "--n_trials", "1", "--sampler_seed", "0"]
    assert cli_main(hpo.main, argv) == 0, capsys.readouterr().err
    (trial,) = ingredient_dirs(pool)
    point = tmp_path / "grid" / trial.name  # the grid's run id for the trial's values
    ours, theirs = load_file(trial / "model.safetensors"), load_file(point / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert read_ingredient(trial)["metrics"] == read_ingredient(point)["metrics"]
    assert json.loads((pool / "sweep.json").read_text())["sweep_id"] == read_ingredient(point)["sweep_id"]


def test_two_processes_share_one_sqlite_study_and_a_repeat_is_one_ingredient(
    tiny_bert_dir, tiny_glue, tmp_path, cli_env
):
    out = tmp_path / "pool"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    flags = [
        *tiny_flags(tiny_bert_dir, tiny_glue, out), "--grid", "learning_rate=1e-3,3e-3",
        "--n_trials", "2", "--storage", storage, "--study_name", "shared",
    ]  # fmt: skip
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "hf_soup.hpo", *flags, "--sampler_seed", str(seed)],
            env=single_thread_env(cli_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (0, 1)
    ]
    outputs = [worker.communicate()[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    trials = _trials(storage, "shared")
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)  # both workers, one study
    distinct = {t.params["learning_rate"] for t in trials}
    folders = ingredient_dirs(out)
    assert len(folders) == len(distinct) <= 2  # 4 trials, at most 2 configurations: repeats dropped
    repeats = [t for t in trials if "repeat_of" in t.user_attrs]
    assert len(repeats) == 4 - len(distinct)
    for trial in trials:
        record = read_ingredient(out / trial.user_attrs["run_id"])
        assert record["hyperparameters"]["learning_rate"] == trial.params["learning_rate"]
        assert trial.value == record["metrics"]["heldout"]["primary"]
    assert "not trained again" in "".join(outputs)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--grid", "seed=0,1", "--n_trials", "0"], "--n_trials 0"),
        (["--grid", "seed=0,1", "--shard", "0/2"], "a search runs --n_trials trials"),
        (["--grid", "early_stopping_patience=1,2"], "not a search axis"),
        ([], "no search space"),
        (["--grid", "learning_rate=-1e-5,1e-5"], "learning_rate=-1e-05 (grid axis): must be > 0"),
        (["--grid", "learning_rate=uniform:-1e-5:1e-5"], "learning_rate=-1e-05 (grid axis): must be > 0"),
        (["--grid", "seed=0,1", "weight_decay=-0.1,0"], "weight_decay=-0.1 (grid axis): must be >= 0"),
        (["--grid", "average_last_k=-1,2"], "average_last_k=-1 (grid axis)"),
        (["--grid", "seed=0,1", "--storage", "postgresql://u:S3CRETpw@127.0.0.1:9/db"], "postgresql://***@"),
    ],
)
def test_bad_search_input_is_one_line_and_writes_nothing(extra, match, tiny_bert_dir, tiny_glue, tmp_path, capsys):
    out = tmp_path / "pool"
    assert cli_main(hpo.main, [*tiny_flags(tiny_bert_dir, tiny_glue, out), *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], lines
    assert "S3CRET" not in lines[0]
    assert not out.exists()


def test_missing_optuna_is_one_line(tiny_bert_dir, tiny_glue, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    argv = [*tiny_flags(tiny_bert_dir, tiny_glue, tmp_path / "pool"), "--grid", "seed=0,1"]
    assert cli_main(hpo.main, argv) == 2
    assert capsys.readouterr().err.strip() == (
        "error: hf_soup.hpo: optuna is not installed; pip install 'hf_soup[hpo]' (or pip install optuna)"
    )


def test_storage_credentials_are_never_recorded():
    assert hpo._redact("postgresql://me:secret@db:5432/hpo") == "postgresql://***@db:5432/hpo"
    assert hpo._redact("sqlite:////tmp/a@b/study.db") == "sqlite:////tmp/a@b/study.db"


def test_your_own_trainers_search_exports_its_trials_with_the_callback(tiny_bert_dir, tiny_glue, tmp_path, capsys):
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

    from hf_soup import models
    from hf_soup.data import DataArguments, load_splits
    from hf_soup.metrics import make_compute_metrics
    from hf_soup.tasks import get_task

    task = get_task("rte")
    splits = load_splits(DataArguments(task="rte", glue_dir=str(tiny_glue), heldout_size=40, max_seq_length=32))
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    features = models.encode_splits(splits, tokenizer, "encoder", 32)
    pool = tmp_path / "pool"
    trainer = Trainer(
        model_init=lambda trial: models.load_for_task(tiny_bert_dir, "encoder", task, head_init_seed=42)[0],
        args=TrainingArguments(str(tmp_path / "work"), max_steps=3, per_device_train_batch_size=8, report_to=[]),
        train_dataset=features["train"],
        eval_dataset={"heldout": features["heldout"], "test": features["test"]},
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=make_compute_metrics(task),
        callbacks=[
            hpo.TrialExportCallback(
                pool, task="rte", base_model=str(tiny_bert_dir), head_init_seed=42, split=splits.describe()
            )
        ],
    )
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    trainer.hyperparameter_search(
        hp_space=lambda trial: {"learning_rate": trial.suggest_categorical("learning_rate", [1e-3, 3e-3])},
        compute_objective=lambda metrics: metrics["eval_heldout_primary"],
        n_trials=3,
        direction="maximize",
        backend="optuna",
        storage=storage,
        study_name="mine",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=0),
    )
    trials = _trials(storage, "mine")
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    folders = ingredient_dirs(pool)
    assert len(folders) == len({t.params["learning_rate"] for t in trials})  # 3 trials, 2 configurations: a repeat
    for folder in folders:
        record = read_ingredient(folder)
        trial = next(t for t in trials if t.params["learning_rate"] == record["hyperparameters"]["learning_rate"])
        assert record["head_init_seed"] == 42 and record["split"]["fingerprint"] == splits.fingerprint
        assert trial.value == record["metrics"]["heldout"]["primary"]
    soup = tmp_path / "soup"
    assert cli_main(merge_main, ["--ingredients", str(pool), "--recipe", "uniform", "--output", str(soup)]) == 0
    assert len(json.loads((soup / "soup.json").read_text())["ingredients"]) == 2


def test_each_trial_averages_its_own_trajectory_with_its_own_k(tiny_bert_dir, tiny_glue, tmp_path, capsys):
    out = tmp_path / "pool"
    argv = [
        *tiny_flags(tiny_bert_dir, tiny_glue, out),
        "--grid", "average_last_k=2,3", "seed=0", "--n_trials", "4", "--sampler_seed", "0",
    ]  # fmt: skip
    assert cli_main(hpo.main, argv) == 0, capsys.readouterr().err
    records = [read_ingredient(folder) for folder in ingredient_dirs(out)]
    assert records
    for record in records:
        k = record["hyperparameters"]["average_last_k"]
        assert record["train"]["averaged"] and record["train"]["averaged"]["last_k"] == k, record["train"]
    leftovers = [p for p in (out / ".work").rglob("*")] if (out / ".work").exists() else []
    assert not [p for p in leftovers if "average" in p.name or p.name.startswith("step-")], leftovers
