"""The merge re-scores nothing the sweep already scored: logits stored beside the weights, reused only
when the weights, the tokenised rows and the max length are the ones the merge would score."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from soup_factory import run_merge
from sweep_helpers import ingredient_dirs, load_sweep_main, one_torch_thread, tiny_flags, write_tiny_rte  # noqa: F401

from hf_soup.ingredient import LOGITS_FILE, weights_sha256
from hf_soup.scoring import Scorer
from hf_soup.stored_logits import folder_weights_sha256, sample_rows


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_bert_dir):
    """Three real (tiny) grid points trained by the sweep, each with its logits.safetensors."""
    root = tmp_path_factory.mktemp("stored")
    glue = write_tiny_rte(root / "glue", train_rows=64, dev_rows=24)
    out = root / "runs"
    flags = tiny_flags(tiny_bert_dir, glue, out, "--max_steps", "2")
    assert load_sweep_main()([*flags, "--grid", "learning_rate=1e-3,3e-3", "seed=1", "weight_decay=0,0.1"]) == 0
    return out


@pytest.fixture
def forward_passes(monkeypatch):
    """Every forward pass over a split the merge's scorer runs, counted by split."""
    counts: Counter = Counter()
    logits = Scorer.logits

    def counting(self, split):
        counts[split] += 1
        return logits(self, split)

    monkeypatch.setattr(Scorer, "logits", counting)
    return counts


def _merge(sweep, output, capsys, *flags):
    code, out, err = run_merge(["--ingredients", sweep, "--output", output, *flags], capsys)
    assert code == 0, err
    return json.loads((output / "soup.json").read_text()), out, err


def test_the_sweep_stores_the_logits_it_scored(sweep):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    folders = ingredient_dirs(sweep)
    assert len(folders) == 4
    for folder in folders:
        with safe_open(str(folder / LOGITS_FILE), framework="numpy") as handle:
            metadata = handle.metadata()
        assert metadata["weights_sha256"] == folder_weights_sha256(folder) and metadata["max_length"] == "32"
        assert metadata["precision"] == "float32" and {"fingerprint:heldout", "fingerprint:test"} <= set(metadata)
        logits = load_file(folder / LOGITS_FILE)
        assert logits["heldout"].shape == (40, 2) and logits["test"].shape == (24, 2)
        # the recorded accuracy is the stored logits' accuracy
        record = json.loads((folder / "ingredient.json").read_text())
        assert record["metrics"]["heldout"]["accuracy"] == pytest.approx(
            float(np.mean(logits["heldout"].argmax(1) == _heldout_labels(sweep)))
        )
        assert weights_sha256(folder) == _sha_of(folder / "model.safetensors")  # the logits file is no weight


def _sha_of(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _heldout_labels(sweep):
    from hf_soup.data import load_recorded
    from hf_soup.merge import MergeDataArguments

    record = json.loads((ingredient_dirs(sweep)[0] / "ingredient.json").read_text())
    splits, _ = load_recorded(record, MergeDataArguments(), "x")
    return np.asarray(splits["heldout"]["label"])


def test_a_merge_reusing_stored_logits_gives_the_results_of_one_that_scores_again(
    sweep, tmp_path, capsys, forward_passes
):
    reused, _, err = _merge(sweep, tmp_path / "reused", capsys)
    passes_reused = dict(forward_passes)
    forward_passes.clear()
    scored, _, _ = _merge(sweep, tmp_path / "scored", capsys, "--no_reuse_logits")
    passes_scored = dict(forward_passes)
    n = len(reused["ingredients"])
    assert reused["stored_logits"] == {"file": LOGITS_FILE, "ingredients": n, "reused": n, "scored": 0}
    assert scored["stored_logits"] == {"file": LOGITS_FILE, "ingredients": n, "reused": 0, "scored": n, "reuse": False}
    assert f"reused for {n} of {n} ingredients" in err
    # N fewer forward passes over held-out and over test: no ingredient was run
    assert passes_scored["heldout"] - passes_reused["heldout"] == n
    assert passes_scored["test"] - passes_reused["test"] == n
    # the ensemble's cost is still timed on real passes: every ingredient and the soup, on sampled test rows
    assert passes_reused["timing:test"] == n + 2 and "timing:test" not in passes_scored
    assert reused["inference_speed"]["members"] == n and "timed_on" in reused["inference_speed"]
    # same choices, same scores (the sweep's batches pad differently: float noise only)
    assert [row["name"] for row in reused["ingredients"]] == [row["name"] for row in scored["ingredients"]]
    for key in ("best_single", "ensemble", "uniform", "greedy", "soup", "oracle_best_single"):
        left, right = reused["results"][key], scored["results"][key]
        assert left.get("name") == right.get("name") and left.get("kept") == right.get("kept"), key
        for split in ("heldout", "test"):
            if split in right:
                for metric, value in right[split].items():
                    assert left[split][metric] == pytest.approx(value, abs=1e-5), (key, split, metric)
    assert [step["accepted"] for step in reused["greedy_trace"]] == [s["accepted"] for s in scored["greedy_trace"]]


def _rewrite(folder, **changes):
    """Rewrite an ingredient's logits.safetensors with some header fields changed."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    path = folder / LOGITS_FILE
    with safe_open(str(path), framework="numpy") as handle:
        metadata = {**handle.metadata(), **changes}
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    save_file(tensors, str(path), metadata=metadata)


def test_a_mismatch_forces_scoring_again(sweep, tmp_path, capsys, forward_passes):
    import shutil

    copy = tmp_path / "runs"
    shutil.copytree(sweep, copy)
    first, second, third, _ = ingredient_dirs(copy)
    _rewrite(first, weights_sha256="0" * 64)
    _rewrite(second, **{"fingerprint:test": "1" * 64})
    _rewrite(third, max_length="64")
    soup, _, _ = _merge(copy, tmp_path / "soup", capsys)
    block = soup["stored_logits"]
    assert block["reused"] == 1 and block["scored"] == 3
    assert block["why_scored"] == {
        first.name: "the weights changed since they were scored",
        second.name: "other rows or tokens for test",
        third.name: "max length 64 stored, 32 now",
    }
    # three ingredients on test (the second's held-out still reused), two more on held-out
    forward_passes.clear()
    _merge(copy, tmp_path / "again", capsys, "--no_reuse_logits")
    everything = dict(forward_passes)
    forward_passes.clear()
    _merge(copy, tmp_path / "third", capsys)
    assert everything["test"] - forward_passes["test"] == 1
    assert everything["heldout"] - forward_passes["heldout"] == 2
    forward_passes.clear()
    other_length, _, _ = _merge(copy, tmp_path / "longer", capsys, "--max_seq_length", "24")
    assert other_length["stored_logits"]["reused"] == 0  # every ingredient: other tokens


def test_timing_rows_spread_over_the_lengths():
    lengths = [5, 1, 9, 3, 7, 2, 8]
    assert sample_rows(lengths, 10) == list(range(7))
    picked = sample_rows(lengths, 3)
    assert len(picked) == 3 and picked == sorted(picked)
    assert {lengths[i] for i in picked} == {1, 5, 9}  # shortest, median, longest


def test_the_export_callback_stores_logits_that_a_merge_reuses(tmp_path, glue_dir, tokenizer_dir, capsys):
    from soup_factory import tiny_classifier
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

    from hf_soup.callbacks import IngredientExportCallback
    from hf_soup.data import DataArguments, load_splits
    from hf_soup.metrics import make_compute_metrics
    from hf_soup.scoring import tokenize_for_scoring

    splits = load_splits(DataArguments(task="rte", glue_dir=str(glue_dir), heldout_size=48, max_test_samples=40))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    features = tokenize_for_scoring(splits, tokenizer, 64)
    runs = tmp_path / "runs"
    for seed in (1, 2):
        export = IngredientExportCallback(
            str(runs / f"seed{seed}"), splits=splits, base_model="tiny-bert", head_init_seed=0, seed=seed,
            hyperparameters={"learning_rate": 1e-3, "max_seq_length": 64},
        )  # fmt: skip
        arguments = TrainingArguments(
            output_dir=str(tmp_path / f"out{seed}"), max_steps=1, per_device_train_batch_size=8, eval_strategy="steps",
            eval_steps=1, save_strategy="no", use_cpu=True, report_to="none", disable_tqdm=True, seed=seed,
        )  # fmt: skip
        Trainer(
            model=tiny_classifier(len(tokenizer), noise_seed=seed),
            args=arguments,
            train_dataset=features["heldout"],
            eval_dataset={"heldout": features["heldout"], "test": features["test"]},
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=make_compute_metrics(splits.task),
            callbacks=[export],
        ).train()
        assert (runs / f"seed{seed}" / LOGITS_FILE).is_file()
    capsys.readouterr()
    reused, _, _ = _merge(runs, tmp_path / "reused", capsys)
    scored, _, _ = _merge(runs, tmp_path / "scored", capsys, "--no_reuse_logits")
    assert reused["stored_logits"]["reused"] == 2 and scored["stored_logits"]["reused"] == 0
    for left, right in zip(reused["ingredients"], scored["ingredients"]):
        assert left["name"] == right["name"]
        for split in ("heldout", "test"):
            assert left[split]["accuracy"] == right[split]["accuracy"]
            assert left[split]["loss"] == pytest.approx(right[split]["loss"], abs=1e-6)


def test_geometry_of_a_plain_sweep_measures_from_the_rebuilt_base_and_head(sweep, tmp_path, capsys):
    """No shared start: θ₀ is the base with the sweep's head init, rebuilt; one cosine recomputed directly."""
    from safetensors.numpy import load_file

    from hf_soup.anchors import find_anchor
    from hf_soup.checkpoints import Checkpoint

    soup, _, _ = _merge(sweep, tmp_path / "soup", capsys, "--recipe", "uniform")
    block = soup["geometry"]
    folders = {folder.name: folder for folder in ingredient_dirs(sweep)}
    assert block["start"]["kind"] == "base+head-init" and block["start"]["head_init_seed"] == 42
    assert "/" not in block["start"]["name"]  # a local base: its folder's name, not this machine's path
    start = find_anchor([Checkpoint(folders[name]) for name in block["ingredients"]]).state
    a, b = (load_file(folders[block["ingredients"][i]] / "model.safetensors") for i in (1, 3))
    names = [n for n in a if np.issubdtype(a[n].dtype, np.floating)]
    da = np.concatenate([a[n].astype(np.float64).ravel() - start[n].double().numpy().ravel() for n in names])
    db = np.concatenate([b[n].astype(np.float64).ravel() - start[n].double().numpy().ravel() for n in names])
    assert block["cosines"][1][3] == pytest.approx(float(da @ db / np.linalg.norm(da) / np.linalg.norm(db)), abs=1e-9)


@pytest.mark.parametrize("strict", [False, True])
def test_a_greedy_soup_is_scored_on_test_only_when_it_is_not_one_ingredient(
    sweep, tmp_path, capsys, forward_passes, strict
):
    soup, _, _ = _merge(sweep, tmp_path / "soup", capsys, "--recipe", "greedy", *(["--strict"] if strict else []))
    n, results = len(soup["ingredients"]), soup["results"]
    kept = results["greedy"]["kept"]
    # held-out: the uniform soup and every greedy candidate; test: the uniform soup, and the greedy
    # soup unless it kept one ingredient, which then is that ingredient, scored (here: stored) already
    assert forward_passes["heldout"] == 1 + (n - 1)
    assert forward_passes["test"] == 1 + (len(kept) > 1)
    if len(kept) == 1:
        single = next(row for row in soup["ingredients"] if row["name"] == kept[0])
        assert results["greedy"]["test"] == single["test"] and results["greedy"]["heldout"] == single["heldout"]
