"""What a merge refuses, or says, instead of reporting a soup of ingredients that do not soup.

Tiny random classifiers (tests/soup_factory.py): plain folders with the wrong number of labels,
and held-out disjointness claimed only when every ingredient's record supports it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

from soup_factory import ingredient_record, make_ingredient, run_merge, tiny_classifier

from hf_soup.data import HeldoutCheck
from hf_soup.merge.scorer import every_ingredient_disjoint


def write_binary_csv(path, n=600):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence1", "sentence2", "label"])
        for i in range(n):
            writer.writerow([f"the cat number {i}", f"a dog {i % 7}", "entailment" if i % 2 else "not_entailment"])
    return path


def test_plain_folders_with_default_names_and_the_wrong_label_count_are_refused(tmp_path, tokenizer_dir, capsys):
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    three = {i: f"LABEL_{i}" for i in range(3)}
    for seed in (1, 2):
        model = tiny_classifier(vocab, noise_seed=seed, num_labels=3, id2label=three)
        make_ingredient(tmp_path / "pool" / f"m{seed}", tokenizer_dir, noise_seed=seed, model=model, with_record=False)
    data = write_binary_csv(tmp_path / "train.csv")
    out = tmp_path / "soup"
    capsys.readouterr()
    code, _, err = run_merge(
        ["--ingredients", tmp_path / "pool", "--recipe", "uniform", "--output", out, "--train_file", data], capsys
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "3 outputs" in lines[0] and "2 labels" in lines[0], err
    assert not out.exists() and not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob(".tmp-*"))


def test_disjoint_held_out_needs_every_ingredient_to_record_it():
    recorded = HeldoutCheck(True, "carved from train before fine-tuning")
    with_split = SimpleNamespace(path=Path("runs/a"), ingredient=ingredient_record("a", split={"fingerprint": "f"}))
    no_split = SimpleNamespace(path=Path("runs/b"), ingredient={**ingredient_record("b"), "split": {}})
    plain = SimpleNamespace(path=Path("runs/c"), ingredient=None)
    assert every_ingredient_disjoint(recorded, [with_split, with_split], 40) == recorded
    check = every_ingredient_disjoint(recorded, [with_split, plain], 40)
    assert not check.disjoint and check.reason.startswith("c is a plain model folder")
    check = every_ingredient_disjoint(recorded, [with_split, no_split], 40)
    assert not check.disjoint and check.reason.startswith("b records no held-out split")
