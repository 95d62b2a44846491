"""How well a classifier's probabilities say how likely it is to be right: ECE, NLL, Brier.

    from hf_soup.calibration import calibration_metrics
    calibration_metrics(logits, references)   # {"ece": 0.041, "nll": 0.33, "brier": 0.19}

Why a merge reports them: an ensemble averages probabilities, a soup averages weights before
predicting; reviews of model soups name the soup's calibration as its first limitation. So every
row of a classification merge (each ingredient, the best single, each soup, the ensemble) gets
these on test and on every extra test set, beside its accuracy.

Definitions (softmax of the logits; the ensemble's logits are already log mean probabilities):
  * ECE: 15 equal-width bins of the top-class probability over [0, 1] (a bin is (lo, hi], the first
    [0, hi]); the sum over bins of (rows in bin / rows) × |accuracy in bin − mean confidence in bin|.
  * NLL: the mean −log p(true class) (the merge's `loss` for classification, computed here again).
  * Brier: the mean over rows of Σ_k (p_k − 1[k = true class])² (multi-class form; 0 is perfect, 2 worst).
Regression and text-to-text rows get none (no probabilities over classes).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from hf_soup.extra_tests import ROW_LABELS

ECE_BINS = 15
KEY = "calibration"  # a soup.json row's {split: {ece, nll, brier}}


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def expected_calibration_error(probabilities: np.ndarray, references: np.ndarray, bins: int = ECE_BINS) -> float:
    confidence = probabilities.max(axis=-1)
    correct = (probabilities.argmax(axis=-1) == references).astype(np.float64)
    # bin b holds confidences in (b/bins, (b+1)/bins]; confidence 0 (impossible after softmax) goes in bin 0
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def calibration_metrics(logits: np.ndarray, references: np.ndarray, bins: int = ECE_BINS) -> dict[str, float]:
    """ECE, NLL and Brier score of classification logits against label ids."""
    probabilities = softmax(logits)
    references = np.asarray(references).astype(np.int64)
    rows = np.arange(len(references))
    true = probabilities[rows, references]
    onehot = np.zeros_like(probabilities)
    onehot[rows, references] = 1.0
    return {
        "ece": expected_calibration_error(probabilities, references, bins),
        "nll": float(-np.mean(np.log(np.clip(true, np.finfo(np.float64).tiny, None)))),
        "brier": float(np.mean(np.sum((probabilities - onehot) ** 2, axis=-1))),
    }


def applies_to(task: Any, logits: np.ndarray | None = None) -> bool:
    """Classification with class logits (not regression, not a one-column output)."""
    if task is None or task.is_regression:
        return False
    return logits is None or (np.ndim(logits) == 2 and np.shape(logits)[1] == task.num_labels > 1)


def of_scores(scored: dict[str, Any], references: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """{split: calibration} of one model's `Scored` (split -> ScoreResult) on the given splits."""
    return {
        split: calibration_metrics(scored[split].logits, labels)
        for split, labels in references.items()
        if split in scored
    }


def add_calibration(task: Any, rows: Iterable[Any], ingredients: Any, references: dict[str, np.ndarray]) -> None:
    """Give every result row (`fields["calibration"]`) and every ingredient (`ingredients.calibration`)
    its calibration on each of `references`' splits (test and the extra test sets)."""
    rows = list(rows)
    if not applies_to(task) or ingredients is None:
        return
    first = next(iter(ingredients.scored[0].values()), None)
    if first is None or not applies_to(task, first.logits):
        return
    for row in rows:
        found = of_scores(row.scores, references)
        if found:
            row.fields[KEY] = found
    ingredients.calibration = [of_scores(scored, references) for scored in ingredients.scored]


# ----------------------------------------------------------------------------- the table and the card

ROWS = ROW_LABELS  # the rows shown, in order, as the extra-test section names them


def _splits(soup: dict[str, Any]) -> list[str]:
    for row in (soup.get("results") or {}).values():
        if isinstance(row, dict) and isinstance(row.get(KEY), dict):
            return list(row[KEY])
    return []


def table_lines(soup: dict[str, Any]) -> list[str]:
    """The printed calibration table: ECE / NLL / Brier of every row on each split (lower is better)."""
    splits, results = _splits(soup), soup.get("results") or {}
    if not splits:
        return []
    header = f"{'calibration (lower is better)':30s}" + "".join(
        f" {s.removeprefix('extra:')[:8] + ' ECE':>13s} {'NLL':>7s} {'Brier':>7s}" for s in splits
    )
    lines = [header]
    for key, label in ROWS.items():
        row = results.get(key)
        if not isinstance(row, dict) or KEY not in row:
            continue
        cells = ""
        for split in splits:
            found = row[KEY].get(split) or {}
            cells += "".join(
                f" {found[k]:{w}.4f}" if k in found else f" {'-':>{w}s}"
                for k, w in (("ece", 13), ("nll", 7), ("brier", 7))
            )
        lines.append(f"{label:30s}{cells}")
    return lines


def card_text(soup: dict[str, Any]) -> str:
    """The card's calibration table (every row on each split), and what it means."""
    splits, results = _splits(soup), soup.get("results") or {}
    if not splits:
        return ""
    header = ["model", *[f"{s.removeprefix('extra:')} ECE / NLL / Brier" for s in splits]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, label in ROWS.items():
        row = results.get(key)
        if not isinstance(row, dict) or KEY not in row:
            continue
        cells = []
        for split in splits:
            found = row[KEY].get(split)
            cells.append(f"{found['ece']:.4f} / {found['nll']:.4f} / {found['brier']:.4f}" if found else "—")
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return (
        "### Calibration\n\n"
        f"How far the predicted probabilities are from how often the model is right (lower is better): "
        f"expected calibration error over {ECE_BINS} equal-width bins of the top-class probability, the mean "
        "negative log-likelihood of the true class, and the Brier score. A soup averages weights, an "
        "ensemble averages probabilities: compare their rows.\n\n" + "\n".join(lines)
    )
