"""The merge with the issue-12 recipes: model stock (anchors), the filtered uniform soup, `--compare all`,
and every soup's test gain over the best single with its bootstrap interval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from soup_factory import make_ingredient, run_merge, tiny_classifier, unmoved_classifier
from sweep_helpers import ingredient_dirs, load_sweep_main, tiny_flags, write_tiny_rte

from hf_soup.anchors import find_anchor
from hf_soup.checkpoints import Checkpoint
from hf_soup.recipes.model_stock import model_stock_soup


def test_model_stock_on_a_sweep_uses_its_recorded_start(warm_sweep, tmp_path, capsys):
    from safetensors.torch import load_file

    output = tmp_path / "stock"
    code, out, err = run_merge(["--ingredients", warm_sweep, "--recipe", "model-stock", "--output", output], capsys)
    assert code == 0, err
    soup = json.loads((output / "soup.json").read_text())
    block = soup["model_stock"]
    assert block["anchor"]["kind"] == "warm-start" and block["anchor"]["path"].endswith(".shared/warm-start-x")
    assert block["summary"]["tensors_mixed"] == len(block["tensors"]) > 0
    assert all(0.0 <= row["t"] <= 1.0 for row in block["tensors"])
    checkpoints = [Checkpoint(p) for p in sorted(warm_sweep.iterdir()) if not p.name.startswith(".")]
    expected = model_stock_soup(checkpoints, Checkpoint(warm_sweep / ".shared" / "warm-start-x")).state
    written = load_file(output / "model.safetensors")
    assert all(torch.equal(written[name], expected[name]) for name in written)
    assert "model stock" in out and "<- written" in out.split("model stock")[1].splitlines()[0]
    assert "model-stock-soup" in (output / "README.md").read_text()


def test_model_stock_refuses_without_an_anchor_and_takes_one_for_plain_folders(
    tmp_path, tokenizer_dir, glue_dir, capsys
):
    plain = [make_ingredient(tmp_path / f"plain{i}", tokenizer_dir, noise_seed=i, with_record=False) for i in (1, 2)]
    capsys.readouterr()  # the fixtures' own output
    data = ["--task", "rte", "--glue_dir", glue_dir, "--heldout_size", "48", "--max_test_samples", "40"]
    code, _, err = run_merge(
        ["--ingredients", *plain, *data, "--recipe", "model-stock", "--output", tmp_path / "x"], capsys
    )
    assert code == 2 and err.startswith("error: ") and "pass --anchor DIR" in err and not (tmp_path / "x").exists()
    from transformers import AutoTokenizer

    other = tiny_classifier(len(AutoTokenizer.from_pretrained(tokenizer_dir)), num_labels=3)
    wrong = make_ingredient(tmp_path / "wrong", tokenizer_dir, noise_seed=0, with_record=False, model=other)
    argv = ["--ingredients", *plain, *data, "--recipe", "model-stock", "--anchor", wrong, "--output", tmp_path / "z"]
    code, _, err = run_merge(argv, capsys)
    assert code == 2 and "'classifier." in err and "not the ingredients' start" in err
    anchor = make_ingredient(
        tmp_path / "start", tokenizer_dir, noise_seed=0, with_record=False, model=unmoved_classifier(tokenizer_dir)
    )
    argv = ["--ingredients", *plain, *data, "--recipe", "model-stock", "--anchor", anchor, "--output", tmp_path / "y"]
    code, _, err = run_merge(argv, capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "y" / "soup.json").read_text())["model_stock"]["anchor"]["kind"] == "explicit"


def test_a_moved_or_changed_start_is_refused(warm_sweep, tmp_path, tokenizer_dir, capsys):
    start = warm_sweep / ".shared" / "warm-start-x"
    make_ingredient(start, tokenizer_dir, noise_seed=9, with_record=False)  # other weights, same place
    code, _, err = run_merge(
        ["--ingredients", warm_sweep, "--recipe", "model-stock", "--output", tmp_path / "s"], capsys
    )
    assert code == 2 and "is not the" in err and "started from" in err


def test_the_rebuilt_base_and_head_is_bit_identical_to_where_a_plain_sweep_started(
    tmp_path, tiny_bert_dir, monkeypatch
):
    """The weights the sweep's loop really starts every grid point from (spied on) are the anchor model
    stock rebuilds from ingredient.json alone."""
    from hf_soup.sweep import loop

    started = []
    load_model = loop.load_model

    def spy(context, run, **kwargs):
        model, new = load_model(context, run, **kwargs)
        started.append({name: tensor.detach().clone() for name, tensor in model.state_dict().items()})
        return model, new

    monkeypatch.setattr(loop, "load_model", spy)
    glue = write_tiny_rte(tmp_path / "glue", train_rows=48, dev_rows=16)
    out = tmp_path / "runs"
    flags = tiny_flags(tiny_bert_dir, glue, out, "--max_steps", "1", "--head_init_seed", "7")
    assert load_sweep_main()([*flags, "--grid", "learning_rate=1e-3", "seed=3,4"]) == 0
    ingredients = [Checkpoint(path) for path in ingredient_dirs(out)]
    assert len(ingredients) == 2 == len(started)
    anchor = find_anchor(ingredients)
    assert anchor.description["kind"] == "base+head-init" and anchor.description["head_init_seed"] == 7
    for start in started:
        assert all(torch.equal(anchor.state[name], start[name]) for name in ingredients[0])
    assert not torch.equal(ingredients[0]["classifier.weight"], anchor.state["classifier.weight"])  # it trained


def test_compare_all_scores_every_recipe_once_with_gains_and_saves_predictions(warm_sweep, tmp_path, capsys):
    output, predictions = tmp_path / "all", tmp_path / "predictions" / "rte.npz"
    argv = ["--ingredients", warm_sweep, "--recipe", "filtered-uniform", "--compare", "all", "--output", output]
    code, out, err = run_merge([*argv, "--filter_margin", "0.5", "--predictions_file", predictions], capsys)
    assert code == 0, err
    soup = json.loads((output / "soup.json").read_text())
    results = soup["results"]
    recipes = {"uniform", "filtered-uniform", "greedy", "greedy-loss", "model-stock", "learned"}
    assert set(results) == recipes | {"soup", "best_single", "ensemble", "oracle_best_single", "majority"}
    assert results["greedy-loss"]["criterion"] == "loss"
    for key in recipes | {"ensemble", "soup"}:
        gain = results[key]["gain_over_best_single"]
        assert gain["low"] <= gain["estimate"] <= gain["high"] and gain["n_resamples"] == 2000
        test, best = results[key]["test"]["primary"], results["best_single"]["test"]["primary"]
        assert gain["estimate"] == pytest.approx(test - best)
    assert "gain_over_best_single" not in results["best_single"] and "gain" not in results["oracle_best_single"]
    assert results["soup"]["gain_over_best_single"] == results["filtered-uniform"]["gain_over_best_single"]
    kept, dropped = results["filtered-uniform"]["kept"], soup["filtered_uniform"]["dropped"]
    assert len(kept) + len(dropped) == 3 and soup["filtered_uniform"]["margin"] == 0.5
    assert all("chance" in why for why in dropped.values())  # tiny random models: within 0.5, but near chance
    saved = np.load(predictions)
    assert set(saved.files) == recipes | {"best_single", "majority", "ensemble", "oracle_best_single", "references"}
    assert saved["references"].shape == (40,) and saved["model-stock"].shape == (40, 2)
    assert "test gain vs best single [95% CI]" in out and "greedy soup by loss" in out
    card = (output / "README.md").read_text()
    assert "filtered uniform soup" in card and "95%" in card


def test_filtered_uniform_drops_what_falls_below_the_margin(warm_sweep, tmp_path, capsys):
    output = tmp_path / "filtered"
    argv = ["--ingredients", warm_sweep, "--recipe", "filtered-uniform", "--filter_margin", "0", "--output", output]
    code, _, err = run_merge(argv, capsys)
    assert code == 0, err
    soup = json.loads((output / "soup.json").read_text())
    kept = soup["results"]["filtered-uniform"]["kept"]
    heldout = {row["name"]: row["heldout"]["primary"] for row in soup["ingredients"]}
    assert kept and all(heldout[name] == max(heldout.values()) for name in kept)  # margin 0: only the best
    assert set(soup["filtered_uniform"]["dropped"]) == set(heldout) - set(kept)
    assert {row["name"] for row in soup["ingredients"] if row["kept"]} == set(kept)
    assert sum(row["weight"] for row in soup["ingredients"]) == pytest.approx(1.0)
    assert run_merge(["--ingredients", warm_sweep, "--filter_margin", "-1", "--output", tmp_path / "n"], capsys)[0] == 2
