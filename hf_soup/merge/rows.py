"""The rows every soup is compared with, and the ingredients' scores they come from (what the merge prints and records).

    from hf_soup.merge.rows import score_ingredients, baseline_rows, add_gains
    ingredients = score_ingredients(scorer, checkpoints, "metric", splits)
    rows = baseline_rows(task, checkpoints, ingredients, scorer)   # best single, majority, ensemble, oracle
    add_gains(task, rows, scorer.references("test"))               # each row's gain over the best single

The baselines: the best single ingredient chosen on held-out, a model that learned nothing, the
soft-vote logit ensemble (k× inference cost) and, labelled as an oracle, the best single on test.
Every row keeps its logits (`Scored`), so paired statistics (bootstrap intervals of a gain over the
best single) can be computed from the rows without scoring anything again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_soup.recipes.context import SCORED_SPLITS, IngredientScores, Scored, metrics_of, progress_bar, selection_score
from hf_soup.soup_file import BEATS_MAJORITY_KEY, GAIN_KEY, MAJORITY_KEY, NOT_COMPARED

if TYPE_CHECKING:  # scoring pulls in scipy/sklearn/datasets: imported only when a merge scores
    from hf_soup.checkpoints import Checkpoint
    from hf_soup.scoring import Scorer
    from hf_soup.tasks import Task


def score_ingredients(
    scorer: Scorer, checkpoints: Sequence[Checkpoint], criterion: str, splits: Sequence[str] = SCORED_SPLITS
) -> IngredientScores:
    """Swap each ingredient into the one scoring model and score it on every split."""
    scored = []
    for checkpoint in progress_bar("scoring ingredients")(checkpoints):
        scorer.load_state(checkpoint)
        scored.append({split: scorer.score(split) for split in splits})
    return IngredientScores(scored, [selection_score(s["heldout"].metrics, criterion) for s in scored])


# ----------------------------------------------------------------------------- result rows


@dataclass
class ResultRow:
    """One row of soup.json `results` (and of the printed table): a model and its scores.

    `scores` keeps the logits (split -> ScoreResult); `fields` are the row's other soup.json keys
    (greedy's `kept`, the ensemble's `members` and `inference_cost`, the oracle's `oracle`).
    """

    key: str
    scores: Scored
    name: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**({"name": self.name} if self.name else {}), **metrics_of(self.scores), **self.fields}


def baseline_rows(
    task: Task, checkpoints: Sequence[Checkpoint], ingredients: IngredientScores, scorer: Scorer
) -> list[ResultRow]:
    """Best single (held-out), the majority-class baseline, the logit ensemble, and the oracle best
    single (test, reported only)."""
    from hf_soup.ensemble import ensemble_logits, inference_cost
    from hf_soup.metrics import metrics_from_logits
    from hf_soup.scoring import ScoreResult

    best, oracle, n = ingredients.best, ingredients.oracle, len(checkpoints)
    ensemble = {}
    for split in ingredients.scored[0]:
        logits = ensemble_logits([r.logits for r in ingredients.split(split)], task.is_regression)
        ensemble[split] = ScoreResult(logits, metrics_from_logits(task, logits, scorer.references(split)))
    return [
        ResultRow("best_single", ingredients.scored[best], checkpoints[best].name),
        majority_row(task, ingredients, scorer),
        ResultRow("ensemble", ensemble, fields={"members": n, "inference_cost": inference_cost(n)}),
        ResultRow(
            "oracle_best_single",
            {"test": ingredients.scored[oracle]["test"]},
            checkpoints[oracle].name,
            {"oracle": True},
        ),
    ]


def majority_row(task: Task, ingredients: IngredientScores, scorer: Scorer) -> ResultRow:
    """A model that learned nothing: always the held-out split's most common label (regression: its
    mean), with the held-out class frequencies as logits (so its loss is the label entropy).

    The row also carries the best single ingredient's gain over it on every scored split, with the
    paired-bootstrap interval the soups' gains use (`best_single_vs_majority`), and
    `learned_nothing`: true when on some split that interval does not lie wholly above zero. That
    is the definition of "the best single does not clearly beat always guessing the majority
    label": the ingredients may not have learned the task (too few steps, a bad learning rate,
    labels that do not follow from the text), and a soup of them cannot be better.
    """
    from hf_soup.metrics import metrics_from_logits
    from hf_soup.scoring import ScoreResult
    from hf_soup.stats import bootstrap_gain

    heldout = np.asarray(scorer.references("heldout"))
    if task.is_regression:
        constant, fields = float(np.mean(heldout)) if len(heldout) else 0.0, {}
    else:
        counts = np.bincount(heldout.astype(int), minlength=task.num_labels).astype(np.float64)
        prior = np.log((counts + 1) / (counts.sum() + task.num_labels))  # add-one: no -inf for an absent label
        fields = {"label": task.id2label[int(np.argmax(counts))]}
    best = ingredients.scored[ingredients.best]
    scores, beats = {}, {}
    for split, scored in best.items():
        shape = np.asarray(scored.logits).shape
        logits = (
            np.full(shape, constant, dtype=np.float32)
            if task.is_regression
            else np.broadcast_to(prior.astype(np.float32), shape).copy()
        )
        references = scorer.references(split)
        scores[split] = ScoreResult(logits, metrics_from_logits(task, logits, references))
        beats[split] = bootstrap_gain(task, references, scored.logits, logits).to_dict()
    fields[BEATS_MAJORITY_KEY] = beats
    fields["learned_nothing"] = any(not gain["low"] > 0 for gain in beats.values())
    return ResultRow(MAJORITY_KEY, scores, fields=fields)


def add_gains(task: Task, rows: Sequence[ResultRow], references: np.ndarray, split: str = "test") -> None:
    """Give every row its gain over the best single on `split`, with a paired-bootstrap interval.

    Same code as the benchmark (`hf_soup.stats`), so what a user sees for their soup is the
    statistic BENCHMARKS.md reports: the interval says how much of the gain the finite test set
    could be luck of the rows (not training randomness: one sweep cannot tell that).
    """
    from hf_soup.stats import bootstrap_gain

    best = next((row for row in rows if row.key == "best_single"), None)
    if best is None or split not in best.scores:
        return
    for row in rows:
        if row.key not in NOT_COMPARED and split in row.scores:
            gain = bootstrap_gain(task, references, row.scores[split].logits, best.scores[split].logits)
            row.fields[GAIN_KEY] = gain.to_dict()
