"""Byte-identical ingredients are one model: the merge counts them once, and says so everywhere."""

import json
import shutil

import pytest
from soup_factory import ingredient_record, make_ingredient, run_merge

from hf_soup.identical import drop_identical


@pytest.fixture
def sweep_with_twin(tmp_path, tokenizer_dir, rte_split):
    """Three runs; the third is a byte-for-byte copy of the first under another run id (an axis that
    never took effect, e.g. early stopping that never triggered)."""
    root = tmp_path / "runs"
    for seed in (1, 2):
        name = f"run{seed}"
        make_ingredient(
            root / name, tokenizer_dir, noise_seed=seed, record=ingredient_record(name, split=rte_split, seed=seed)
        )
    twin = root / "run1-patience3"
    shutil.copytree(root / "run1", twin)
    record = json.loads((twin / "ingredient.json").read_text())
    record["run_id"] = "run1-patience3"
    record["hyperparameters"] = {**record["hyperparameters"], "early_stopping_patience": 3}
    (twin / "ingredient.json").write_text(json.dumps(record))
    return root


def test_drop_identical_keeps_the_first_of_each_set_of_twins(tmp_path, tokenizer_dir):
    from hf_soup.checkpoints import Checkpoint

    a = make_ingredient(tmp_path / "a", tokenizer_dir, noise_seed=1, with_record=False)
    b = make_ingredient(tmp_path / "b", tokenizer_dir, noise_seed=2, with_record=False)
    shutil.copytree(a, tmp_path / "a2")
    checkpoints = [Checkpoint(p) for p in (a, b, tmp_path / "a2")]
    kept, twins = drop_identical(checkpoints)
    assert [c.path.name for c in kept] == ["a", "b"]
    assert [(t.dropped.path.name, t.kept.path.name) for t in twins] == [("a2", "a")]


@pytest.mark.parametrize("recipe", ["greedy", "uniform"])
def test_twins_count_once_in_soups_ensemble_soup_json_and_card(sweep_with_twin, tmp_path, capsys, recipe):
    output = tmp_path / f"soup-{recipe}"
    code, out, err = run_merge(["--ingredients", sweep_with_twin, "--recipe", recipe, "--output", output], capsys)
    assert code == 0, err
    assert "run1-patience3" in err and "byte-identical" in err and "counted once" in err
    assert "ensemble (2 models, 2x inference)" in out and "uniform soup (2)" in out
    assert "identical weights: 1 ingredient(s)" in out and "run1-patience3 = run1" in out
    soup = json.loads((output / "soup.json").read_text())
    assert sorted(row["name"] for row in soup["ingredients"]) == ["run1", "run2"]
    assert soup["identical_weights"][0]["name"] == "run1-patience3"
    assert soup["identical_weights"][0]["identical_to"] == "run1"
    assert soup["results"]["ensemble"]["members"] == 2
    kept = [row for row in soup["ingredients"] if row["kept"]]
    assert soup["distinct_kept"] == len(kept)
    if recipe == "greedy":  # never two rows for one model
        assert len(set(soup["results"]["greedy"]["kept"])) == len(soup["results"]["greedy"]["kept"]) <= 2
    card = (output / "README.md").read_text()
    assert "run1-patience3" in card and "byte-identical" in card
    assert "3 fine-tuned" not in card
