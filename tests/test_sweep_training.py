"""Grid points trained end to end on tiny random BERT/T5 (in-process, seconds each)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sweep_helpers import (
    ingredient_dirs,
    load_sweep_main,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    tiny_flags,
    tiny_glue_fixture,  # noqa: F401 (fixture `tiny_glue`)
)
from transformers import AutoModelForSequenceClassification

from hf_soup import models
from hf_soup.data import DataArguments, load_splits
from hf_soup.errors import SoupError
from hf_soup.ingredient import is_ingredient, read_ingredient, weights_sha256
from hf_soup.scoring import Scorer
from hf_soup.sweep.arguments import ARGUMENT_TYPES, SWEEP_DEFAULTS, parse_sweep_args
from hf_soup.sweep.loop import last_complete_checkpoint
from hf_soup.sweep.planning import plan_sweep
from hf_soup.tasks import get_task

sweep_main = load_sweep_main()  # scripts/sweep.py's main(argv), in-process


RTE = get_task("rte")


def _score_folder(folder, glue, family):
    """Score a saved ingredient the way the merge will: load_ingredient_model + class_logits."""
    from transformers import AutoTokenizer

    model = models.load_ingredient_model(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    splits = load_splits(DataArguments(task="rte", glue_dir=str(glue), heldout_size=40, max_seq_length=32))
    features = models.encode_splits(splits, tokenizer, family, 32)
    scorer = Scorer(
        model, RTE, features, batch_size=16, pad_token_id=tokenizer.pad_token_id, logits_fn=models.class_logits
    )
    return scorer.score("heldout").metrics


def test_encoder_sweep_writes_complete_ingredients_and_skips_them_on_rerun(tiny_bert_dir, tiny_glue, tmp_path, capsys,
                                                                          recwarn):  # fmt: skip
    out = tmp_path / "runs"
    flags = tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "learning_rate=1e-4,3e-4", "seed=0,1")
    assert sweep_main(flags) == 0
    if not torch.accelerator.is_available():  # nothing to pin memory for: no UserWarning at every point
        assert not [w for w in recwarn if "pin_memory" in str(w.message)]
    folders = ingredient_dirs(out)
    assert len(folders) == 4 and all(is_ingredient(f) for f in folders)
    record = read_ingredient(folders[0])
    for name in ("run_id", "sweep_id", "task", "primary_metric", "base_model", "model_family", "head_init_seed", "seed",
                 "hyperparameters", "split", "metrics", "train", "command", "versions", "created"):  # fmt: skip
        assert name in record, name
    assert record["run_id"] == folders[0].name and record["model_family"] == "encoder"
    assert record["base_model"]["weights_sha256"] == weights_sha256(tiny_bert_dir)
    assert record["grid_axes"] == ["learning_rate", "seed"]
    assert record["hyperparameters"]["learning_rate"] in (1e-4, 3e-4) and "seed" not in record["hyperparameters"]
    assert record["hyperparameters"]["max_steps"] == 3 and record["train"]["steps"] == 3
    assert record["split"]["heldout_size"] == 40 and record["split"]["fingerprint"]
    for split in ("heldout", "test"):
        assert {"accuracy", "primary", "loss"} <= set(record["metrics"][split])
    assert len({read_ingredient(f)["sweep_id"] for f in folders}) == 1
    assert sorted(p.name for p in folders[0].iterdir()) == [
        "config.json", "ingredient.json", "logits.safetensors", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json",
    ]  # fmt: skip
    config = json.loads((folders[0] / "config.json").read_text())
    assert config["id2label"] == {"0": "entailment", "1": "not_entailment"}
    assert not (out / ".work").exists() and not list(out.glob(".tmp-*")) and not list(out.glob("*.lock"))
    table = capsys.readouterr().out
    assert "heldout accuracy" in table and all(f.name in table for f in folders)
    rows = [line.split("|") for line in (out / "leaderboard.md").read_text().splitlines()[2:]]
    assert len(rows) == 4 and [row[1].strip() for row in rows] == ["1", "2", "3", "4"]
    heldout = [float(row[5]) for row in rows]
    assert heldout == sorted(heldout, reverse=True)  # best held-out score first

    mtimes = {f.name: (f / "model.safetensors").stat().st_mtime_ns for f in folders}
    assert sweep_main(flags) == 0  # rerun: nothing to train
    assert "0 to train" in capsys.readouterr().out
    assert {f.name: (f / "model.safetensors").stat().st_mtime_ns for f in ingredient_dirs(out)} == mtimes
    wider = tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "learning_rate=1e-4,3e-4,1e-3", "seed=0,1")
    assert sweep_main(wider) == 0  # extending an axis trains only the new points
    assert "4 already finished, 2 to train" in capsys.readouterr().out
    assert len(ingredient_dirs(out)) == 6


def test_all_grid_points_share_one_head_initialisation(tiny_bert_dir, tiny_glue, tmp_path):
    """With a learning rate of 1e-9 one AdamW step moves no weight by more than ~1e-9: the saved heads
    are the initial ones, which must match across seeds and differ across head-init seeds."""
    heads = {}
    for head_seed in (42, 7):
        out = tmp_path / f"head{head_seed}"
        flags = tiny_flags(tiny_bert_dir, tiny_glue, out, "--learning_rate", "1e-9", "--max_steps", "1",
                           "--head_init_seed", str(head_seed), "--grid", "seed=0,1")  # fmt: skip
        assert sweep_main(flags) == 0
        states = [load_file(f / "model.safetensors") for f in ingredient_dirs(out)]
        assert torch.allclose(states[0]["classifier.weight"], states[1]["classifier.weight"], rtol=0, atol=1e-6)
        assert torch.allclose(states[0]["classifier.bias"], states[1]["classifier.bias"], rtol=0, atol=1e-6)
        heads[head_seed] = states[0]["classifier.weight"]
    assert (heads[42] - heads[7]).abs().max() > 1e-3


def test_t5_classification_end_to_end_and_loadable_with_auto_class(tiny_t5_dir, tiny_glue, tmp_path):
    out = tmp_path / "t5"
    flags = tiny_flags(tiny_t5_dir, tiny_glue, out, "--learning_rate", "1e-3", "--grid", "seed=0,1",
                       "hidden_dropout_prob=0.0")  # fmt: skip
    with pytest.raises(SoupError, match="unknown grid axis 'hidden_dropout_prob'"):  # BERT's; T5: dropout_rate
        sweep_main(flags)
    flags[-1] = "dropout_rate=0.0"
    assert sweep_main(flags) == 0
    folders = ingredient_dirs(out)
    assert len(folders) == 2
    record = read_ingredient(folders[0])
    assert record["model_family"] == "t5-classification" and record["hyperparameters"]["dropout_rate"] == 0.0
    model = AutoModelForSequenceClassification.from_pretrained(folders[0])
    assert type(model).__name__ == "T5ForSequenceClassification" and model.config.id2label == RTE.id2label
    # the merge's way of scoring reproduces what the sweep recorded
    rescored = _score_folder(folders[0], tiny_glue, "t5-classification")
    assert rescored["primary"] == pytest.approx(record["metrics"]["heldout"]["primary"])
    assert rescored["loss"] == pytest.approx(record["metrics"]["heldout"]["loss"], rel=1e-4)


def test_text2text_with_warm_start_and_early_stopping(tiny_t5_dir, tiny_glue, tmp_path):
    out = tmp_path / "t2t"
    flags = tiny_flags(tiny_t5_dir, tiny_glue, out, "--model_family", "t5-text2text", "--learning_rate", "1e-3",
                       "--warm_start_epochs", "0.2", "--max_steps", "4", "--eval_strategy", "steps",
                       "--eval_steps", "2", "--grid", "early_stopping_patience=0,1")  # fmt: skip
    assert sweep_main(flags) == 0
    folders = ingredient_dirs(out)
    assert len(folders) == 2
    shared = list((out / ".shared").iterdir())
    assert [p.name.split("-")[:2] for p in shared if p.is_dir()] == [["warm", "start"]]
    for folder in folders:
        record = read_ingredient(folder)
        assert record["model_family"] == "t5-text2text"
        assert record["start"]["kind"] == "warm-start" and record["start"]["warm_start_epochs"] == 0.2
        assert record["start"]["weights_sha256"] == weights_sha256(out / record["start"]["path"])
        config = json.loads((folder / "config.json").read_text())
        assert config[models.LABEL_WORDS_KEY] == ["entailment", "not_entailment"]
        rescored = _score_folder(folder, tiny_glue, "t5-text2text")
        assert rescored["primary"] == pytest.approx(record["metrics"]["heldout"]["primary"])


def test_lp_ft_fits_only_the_head_then_every_point_starts_from_it(tiny_bert_dir, tiny_glue, tmp_path):
    out = tmp_path / "lpft"
    flags = tiny_flags(tiny_bert_dir, tiny_glue, out, "--lp_ft_epochs", "1", "--lp_ft_learning_rate", "0.05",
                       "--freeze_layers", "1", "--grid", "seed=0,1")  # fmt: skip
    assert sweep_main(flags) == 0
    (lp,) = [p for p in (out / ".shared").iterdir() if p.is_dir()]
    base = load_file(tiny_bert_dir / "model.safetensors")
    fitted = load_file(lp / "model.safetensors")
    assert all(torch.equal(base[k], fitted["bert." + k]) for k in base)  # body untouched
    initial, _ = models.load_for_task(tiny_bert_dir, "encoder", RTE, head_init_seed=42)
    assert not torch.equal(initial.classifier.weight, fitted["classifier.weight"])  # head was fitted
    for folder in ingredient_dirs(out):
        state = load_file(folder / "model.safetensors")
        emb = "bert.embeddings.word_embeddings.weight"
        assert torch.equal(state[emb], fitted[emb])  # freeze_layers=1 kept the embeddings
        assert not torch.equal(state["bert.encoder.layer.1.output.dense.weight"],
                               fitted["bert.encoder.layer.1.output.dense.weight"])  # fmt: skip
        assert read_ingredient(folder)["start"]["kind"] == "lp-ft"


def test_stale_temporaries_and_torn_checkpoints_are_cleared(tiny_bert_dir, tiny_glue, tmp_path):
    """What a SIGKILL can leave behind: a half-renamed `.tmp-<run>-*` folder and a checkpoint whose
    trainer_state.json was never written. The rerun must ignore or clear both."""
    out = tmp_path / "stale"
    flags = tiny_flags(tiny_bert_dir, tiny_glue, out, "--save_strategy", "steps", "--save_steps", "1",
                       "--grid", "seed=0,1")  # fmt: skip
    sweep = plan_sweep(parse_sweep_args(flags, ARGUMENT_TYPES, defaults=SWEEP_DEFAULTS))
    first = sweep.runs[0].run_id
    (out / f".tmp-{first}-123-abcd").mkdir(parents=True)
    (out / f".tmp-{first}-123-abcd" / "model.safetensors").write_bytes(b"partial")
    torn = out / ".work" / first / "checkpoint-2"
    torn.mkdir(parents=True)
    (torn / "model.safetensors").write_bytes(b"partial")
    assert last_complete_checkpoint(out / ".work" / first) is None
    assert sweep_main(flags) == 0
    assert not list(out.glob(".tmp-*")) and not (out / ".work").exists()
    assert [f.name for f in ingredient_dirs(out)] == sorted(r.run_id for r in sweep.runs)
    assert read_ingredient(out / first)["train"]["resumed_from_step"] is None
    assert np.isfinite(read_ingredient(out / first)["metrics"]["test"]["loss"])


def test_widening_a_single_valued_axis_trains_only_the_new_point(tiny_bert_dir, tiny_glue, tmp_path, capsys):
    """`--grid seed=0` then `--grid seed=0,1`: the seed=0 point keeps its id and is not retrained,
    also when its folder was named the old way (single-valued axes left out: `run-<hash>`)."""
    out = tmp_path / "widen"
    assert sweep_main(tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "seed=0")) == 0
    (first,) = ingredient_dirs(out)
    written = (first / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    wider = tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "seed=0,1")
    assert sweep_main(wider) == 0
    assert "1 already finished, 1 to train" in capsys.readouterr().out
    folders = ingredient_dirs(out)
    assert len(folders) == 2 and first in folders and (first / "model.safetensors").stat().st_mtime_ns == written

    legacy = out / f"run-{first.name.rsplit('-', 1)[1]}"  # what the old naming wrote for `--grid seed=0`
    first.rename(legacy)
    record = json.loads((legacy / "ingredient.json").read_text())
    (legacy / "ingredient.json").write_text(json.dumps({**record, "run_id": legacy.name}))
    assert sweep_main(wider) == 0
    printed = capsys.readouterr().out
    assert "2 already finished, 0 to train" in printed and f"finished as {legacy.name}" in printed
    assert len(ingredient_dirs(out)) == 2
