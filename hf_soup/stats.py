"""Is the soup really better than the best single model? A paired bootstrap over the test rows.

    from hf_soup.stats import bootstrap_gain
    gain = bootstrap_gain(task, references, soup_predictions, best_single_predictions)
    print(gain)            # +0.0108 [95% CI -0.0072, +0.0289]

Why: test sets of a few hundred rows make one-point differences noise (one row of RTE's 277 is
0.0036 accuracy). A soup and the best single predict the SAME rows, so what matters is how often
they disagree, not how hard the rows are: resampling rows and scoring both models on each
resample (paired) measures exactly the uncertainty of their difference that comes from which
rows happen to be in the test set. It says nothing about training randomness (another seed, another
grid): that is what replicated sweeps are for (`benchmarks/soup_quality.py` pools them with
`bootstrap_mean_gain`, drawing each test set's rows once per resample for all its replicates).

Method: `n_resamples` (default 2000) draws of n row indices with replacement from a seeded
generator (`seed`, default 0: the same inputs give the same interval; drawn in chunks of about
`CHUNK_ELEMENTS` indices, so memory does not grow with n, yet the same draws as one matrix), the
task's primary score of both prediction vectors on every draw, their difference, and the percentile interval of those
differences at `confidence` (default 0.95). `standard_error` is the standard deviation of the
bootstrap differences. The metrics are vectorised over the draws (confusion counts for accuracy,
F1 and Matthews correlation, moments and ranks for Pearson and Spearman) and agree with
`hf_soup.metrics` on the original rows, degenerate cases included (constant predictions: MCC and
correlations 0; no positive prediction: F1 0).

Imports numpy and scipy, and of ours only `tasks` and `metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

from hf_soup.metrics import predictions_from_logits
from hf_soup.tasks import Task

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0
# Row indices drawn at once: 2**21 int64 is 16 MiB, a few such arrays the peak of one interval at any n
# (QQP's 40k test rows would otherwise need a 2000 x 40k matrix, 640 MB, plus the metric's temporaries).
CHUNK_ELEMENTS = 1 << 21
METHOD = "paired bootstrap over test rows (percentile interval)"


@dataclass(frozen=True)
class Interval:
    """A gain (candidate − baseline, primary score) with its bootstrap interval."""

    estimate: float  # on the test rows as they are
    low: float
    high: float
    standard_error: float  # standard deviation of the bootstrap gains
    confidence: float
    n_resamples: int
    seed: int

    def to_dict(self) -> dict:
        """The `gain_over_best_single` block of soup.json (docs/FORMATS.md)."""
        return {**asdict(self), "method": METHOD}

    def __str__(self) -> str:
        return f"{self.estimate:+.4f} [{self.confidence:.0%} CI {self.low:+.4f}, {self.high:+.4f}]"


@dataclass
class GainGroup:
    """One test set and the (candidate, baseline) prediction pairs scored on it.

    Several pairs share a group when they predict the same rows (the replicates of one task):
    every bootstrap draw then resamples those rows once for all of them.
    """

    task: Task
    references: np.ndarray
    pairs: list[tuple[np.ndarray, np.ndarray | None]]  # baseline None: the candidate's score itself


# ----------------------------------------------------------------------------- vectorised metrics


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _confusions(predictions: np.ndarray, references: np.ndarray, indices: np.ndarray, k: int) -> np.ndarray:
    """(draws, k, k) counts of (true, predicted) per draw, by one bincount over offset codes."""
    codes = references[indices] * k + predictions[indices]
    draws = indices.shape[0]
    codes += (np.arange(draws) * k * k)[:, None]
    return np.bincount(codes.ravel(), minlength=draws * k * k).reshape(draws, k, k).astype(np.float64)


def _matthews(confusion: np.ndarray) -> np.ndarray:
    """Multi-class Matthews correlation from confusion counts (scikit-learn's formula; 0 when undefined)."""
    true_counts, predicted_counts = confusion.sum(axis=2), confusion.sum(axis=1)
    correct = np.trace(confusion, axis1=1, axis2=2)
    total = confusion.sum(axis=(1, 2))
    covariance = correct * total - (true_counts * predicted_counts).sum(axis=1)
    spread = (total**2 - (predicted_counts**2).sum(axis=1)) * (total**2 - (true_counts**2).sum(axis=1))
    return _safe_divide(covariance, np.sqrt(spread))


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of (draws, n) arrays; 0 where either row is constant."""
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    constant = (np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0)
    return np.where(constant, 0.0, _safe_divide((x * y).sum(axis=1), denominator))


def resampled_primary(task: Task, predictions: np.ndarray, references: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The task's primary score of `predictions` on every draw of row `indices` (draws, n) -> (draws,)."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    parts = []
    if task.is_regression:
        x, y = predictions.astype(np.float64)[indices], references.astype(np.float64)[indices]
        for name in task.primary_parts:
            if name == "pearson":
                parts.append(_pearson(x, y))
            elif name in ("spearman", "spearmanr"):
                parts.append(_pearson(rankdata(x, axis=1), rankdata(y, axis=1)))
            else:
                parts.append(_per_draw(task, name, predictions, references, indices))
        return np.mean(parts, axis=0)
    k = max(task.num_labels, int(predictions.max()) + 1, int(references.max()) + 1)
    confusion = _confusions(predictions.astype(np.int64), references.astype(np.int64), indices, k)
    n = indices.shape[1]
    for name in task.primary_parts:
        if name == "accuracy":
            parts.append(np.trace(confusion, axis1=1, axis2=2) / n)
        elif name == "f1":  # class 1 positive, as GLUE; no positive prediction -> 0
            tp, fp, fn = confusion[:, 1, 1], confusion[:, 0, 1], confusion[:, 1, 0]
            parts.append(_safe_divide(2 * tp, 2 * tp + fp + fn))
        elif name == "matthews_correlation":
            parts.append(_matthews(confusion))
        elif name == "macro_f1":  # mean per-class F1 over the classes present (true or predicted), as sklearn
            tp = np.diagonal(confusion, axis1=1, axis2=2)
            present = confusion.sum(axis=1) + confusion.sum(axis=2)
            per_class = _safe_divide(2 * tp, present)
            parts.append(_safe_divide(per_class.sum(axis=1), (present > 0).sum(axis=1)))
        else:
            parts.append(_per_draw(task, name, predictions, references, indices))
    return np.mean(parts, axis=0)


def _per_draw(task: Task, name: str, predictions: np.ndarray, references: np.ndarray, indices: np.ndarray):
    """Any other metric, through hf_soup.metrics one draw at a time (correct, only slower)."""
    from hf_soup import metrics

    return np.array([metrics.compute_task_metrics(task, predictions[draw], references[draw])[name] for draw in indices])


def chance_score(task: Task, references: np.ndarray) -> float:
    """The best primary score a constant prediction reaches on these rows: what a run that learned
    nothing scores (majority-class accuracy; MCC and correlations 0; MRPC: F1 of "all positive").
    The filtered uniform soup drops ingredients at or below it."""
    references = np.asarray(references)
    if task.is_regression or len(references) == 0:
        return 0.0
    identity = np.arange(len(references))[None, :]
    return max(
        float(resampled_primary(task, np.full(len(references), label), references, identity)[0])
        for label in range(task.num_labels)
    )


# ----------------------------------------------------------------------------- the bootstrap


def _as_predictions(task: Task, values: np.ndarray) -> np.ndarray:
    """Class ids (or regression scores) from logits or from predictions already."""
    values = np.asarray(values)
    return predictions_from_logits(task, values) if values.ndim == 2 else values


def bootstrap_draws(
    groups: Sequence[GainGroup], *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> tuple[float, np.ndarray]:
    """(mean gain over every pair of every group on the rows as they are, the same mean on each draw).

    Each draw resamples every group's rows once, shared by the group's pairs; pairs count equally.
    A pair whose baseline is None contributes the candidate's score itself (a mean score's interval).
    Groups are drawn in order from one generator, so the result is a function of the inputs and `seed`.
    """
    if not groups or not any(group.pairs for group in groups):
        raise ValueError("a bootstrap needs at least one (candidate, baseline) pair")
    rng = np.random.default_rng(seed)
    point, draws, pairs = 0.0, np.zeros(n_resamples), 0
    for group in groups:
        references = np.asarray(group.references)
        n = len(references)
        if n == 0:
            raise ValueError("cannot bootstrap an empty test set")
        identity = np.arange(n)[None, :]
        compared = []  # (candidate, baseline or None, whether the two differ)
        for candidate, baseline in group.pairs:
            candidate = _as_predictions(group.task, candidate)
            baseline = None if baseline is None else _as_predictions(group.task, baseline)
            if len(candidate) != n or (baseline is not None and len(baseline) != n):
                found = len(candidate) if baseline is None else f"{len(candidate)} and {len(baseline)}"
                raise ValueError(f"{found} predictions for {n} test rows")
            pairs += 1
            point += float(resampled_primary(group.task, candidate, references, identity)[0])
            if baseline is not None:
                point -= float(resampled_primary(group.task, baseline, references, identity)[0])
            # identical predictions: exactly 0 on every draw
            compared.append((candidate, baseline, baseline is None or not np.array_equal(candidate, baseline)))
        for rows in _draw_chunks(n_resamples, n):
            # Consecutive calls continue the generator's stream, so the chunks are the rows of the one
            # (n_resamples, n) matrix a single call would draw: the same result, for any n, in bounded memory.
            indices = rng.integers(0, n, size=(rows.stop - rows.start, n))
            for candidate, baseline, differ in compared:
                if not differ:
                    continue
                draws[rows] += resampled_primary(group.task, candidate, references, indices)
                if baseline is not None:
                    draws[rows] -= resampled_primary(group.task, baseline, references, indices)
    return point / pairs, draws / pairs


def _draw_chunks(n_resamples: int, n: int) -> list[slice]:
    """Slices of the draws such that one chunk's index matrix (and the metric's temporaries, a few
    arrays of the same size) holds about `CHUNK_ELEMENTS` numbers, whatever the test set's size."""
    size = max(1, CHUNK_ELEMENTS // max(n, 1))
    return [slice(start, min(start + size, n_resamples)) for start in range(0, n_resamples, size)]


def interval_from_draws(
    estimate: float, draws: np.ndarray, *, confidence: float = DEFAULT_CONFIDENCE, seed: int = DEFAULT_SEED
) -> Interval:
    """Percentile interval of bootstrap draws."""
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return Interval(
        estimate=float(estimate),
        low=float(low),
        high=float(high),
        standard_error=float(np.std(draws, ddof=1)) if len(draws) > 1 else 0.0,
        confidence=confidence,
        n_resamples=len(draws),
        seed=seed,
    )


def bootstrap_mean_gain(
    groups: Sequence[GainGroup],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """The mean gain over several pairs (replicates, tasks) with its paired-bootstrap interval."""
    estimate, draws = bootstrap_draws(groups, n_resamples=n_resamples, seed=seed)
    return interval_from_draws(estimate, draws, confidence=confidence, seed=seed)


def bootstrap_gain(
    task: Task,
    references: np.ndarray,
    candidate: np.ndarray,
    baseline: np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """primary(candidate) − primary(baseline) on one test set, with its paired-bootstrap interval.

    `candidate` and `baseline` are logits (n, num_labels) or predictions (n,), row-aligned with
    `references`. What the merge prints for every soup against the best single ingredient.
    """
    group = GainGroup(task, np.asarray(references), [(np.asarray(candidate), np.asarray(baseline))])
    return bootstrap_mean_gain([group], n_resamples=n_resamples, confidence=confidence, seed=seed)
