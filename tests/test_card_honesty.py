"""What the card and the merge's table say about a soup: the settings that vary, the majority-class
baseline, a warning when the ingredients did not clearly learn, and no "averaged" for one model."""

from __future__ import annotations

import json

import numpy as np
from soup_folders import soup_record
from test_card import make_soup_dir, table_rows

from hf_soup.card import write_card
from hf_soup.merge import format_table
from hf_soup.merge.rows import majority_row
from hf_soup.recipes.context import IngredientScores
from hf_soup.scoring import ScoreResult
from hf_soup.tasks import get_task


class FixedReferences:
    """The one Scorer method majority_row uses."""

    def __init__(self, **references):
        self._references = {split: np.asarray(values) for split, values in references.items()}

    def references(self, split):
        return self._references[split]


def scored(task, references: dict[str, list[int]], predictions: dict[str, list[int]]):
    from hf_soup.metrics import metrics_from_logits

    out = {}
    for split, predicted in predictions.items():
        logits = np.eye(task.num_labels, dtype=np.float32)[predicted] * 4
        out[split] = ScoreResult(logits, metrics_from_logits(task, logits, np.asarray(references[split])))
    return out


def test_majority_row_and_the_learned_nothing_rule():
    task = get_task("rte")  # 0 entailment, 1 not_entailment
    rng = np.random.default_rng(0)
    references = {split: list(rng.choice(2, size=200, p=[0.4, 0.6])) for split in ("heldout", "test")}
    scorer = FixedReferences(**references)

    perfect = IngredientScores([scored(task, references, references)], [1.0])
    row = majority_row(task, perfect, scorer)
    assert row.fields["label"] == "not_entailment"
    for split in ("heldout", "test"):
        expected = np.mean(np.asarray(references[split]) == 1)
        assert abs(row.scores[split].metrics["primary"] - expected) < 1e-9
        assert row.fields["best_single_vs_majority"][split]["low"] > 0
    assert row.fields["learned_nothing"] is False

    # A model that predicts the majority label but for a few rows: not clearly better than guessing.
    guesser = {split: [1] * 195 + list(values[195:]) for split, values in references.items()}
    weak = IngredientScores([scored(task, references, guesser)], [0.6])
    row = majority_row(task, weak, scorer)
    assert row.fields["learned_nothing"] is True
    assert row.fields["best_single_vs_majority"]["test"]["low"] <= 0


def learned_nothing_record(**kwargs):
    record = soup_record(**kwargs)
    gain = {"estimate": -0.016, "low": -0.05, "high": 0.02, "confidence": 0.95}
    record["results"]["majority"] = {
        "heldout": {"accuracy": 0.38, "primary": 0.38, "loss": 0.69},
        "test": {"accuracy": 0.37, "primary": 0.37, "loss": 0.69},
        "label": "not_entailment",
        "best_single_vs_majority": {"heldout": gain, "test": gain},
        "learned_nothing": True,
    }
    return record


def test_table_and_card_show_the_baseline_and_warn(tmp_path):
    record = learned_nothing_record()
    table = format_table(record)
    assert "always 'not_entailment' (majority class)" in table and "0.3800" in table
    assert "warning: the best single ingredient does not clearly beat always guessing 'not_entailment'" in table

    folder = tmp_path / "soup"
    folder.mkdir()
    (folder / "soup.json").write_text(json.dumps(record))
    text = write_card(folder).read_text()
    rows = {row[0]: row for row in table_rows(text, "Results")}
    majority = next(row for label, row in rows.items() if label.startswith("always `not_entailment`"))
    assert majority[1:3] == ["0.3800", "0.3700"]
    limitations = text.split("## Limitations", 1)[1]
    assert "The ingredients may have learned nothing" in limitations and "-0.0160 [-0.0500, +0.0200]" in limitations


def test_no_warning_when_the_best_single_clearly_wins(tmp_path):
    record = learned_nothing_record()
    record["results"]["majority"]["learned_nothing"] = False
    assert "warning" not in format_table(record)
    folder, _ = make_soup_dir(tmp_path)
    assert "learned nothing" not in write_card(folder).read_text().split("## Results", 1)[1].split("## Ingredients")[0]


def test_ingredient_table_has_the_varying_settings_and_one_line_of_constants(tmp_path):
    folder, _ = make_soup_dir(tmp_path)
    text = write_card(folder).read_text()
    section = text.split("## Ingredients\n", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("|"))
    assert "learning_rate" in header and "num_train_epochs" in header and "seed" in header
    assert "warmup_steps" not in header  # the same for all four
    assert "Shared by every ingredient: warmup_steps 0.1." in section


def test_one_kept_ingredient_is_not_called_an_average(tmp_path):
    record = soup_record()
    for ingredient in record["ingredients"][1:]:
        ingredient["kept"], ingredient["weight"] = False, 0.0
    record["ingredients"][0]["weight"] = 1.0
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "soup.json").write_text(json.dumps(record))
    intro = write_card(folder).read_text().split("## How to use", 1)[0]
    assert "averaged into" not in intro and "nothing was averaged" in intro
    assert record["ingredients"][0]["name"] in intro

    record["ingredients"][1]["kept"] = True  # two kept, but byte-identical: one distinct model
    record["distinct_kept"] = 1
    (folder / "soup.json").write_text(json.dumps(record))
    assert "nothing was averaged" in write_card(folder).read_text()

    two, _ = make_soup_dir(tmp_path)  # two distinct kept: an average
    assert (
        "2 of 4 fine-tuned" in write_card(two).read_text() and "averaged into one model" in write_card(two).read_text()
    )


def test_reproduce_has_no_literal_none_for_callback_ingredients(tmp_path):
    record = soup_record()
    record["commands"] = {"sweep": None, "merge": "python -m hf_soup.merge --ingredients runs/mine --output s"}
    folder = tmp_path / "callback"
    folder.mkdir()
    (folder / "soup.json").write_text(json.dumps(record))
    reproduce = write_card(folder).read_text().split("## Reproduce", 1)[1].split("## Limitations")[0]
    assert "None" not in reproduce and "# sweep" not in reproduce and "python -m hf_soup.merge" in reproduce
