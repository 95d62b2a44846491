"""The logit-ensemble baseline a soup is compared with: the soft vote of the k ingredients.

    from hf_soup.ensemble import ensemble_logits, ensemble_metrics
    metrics = ensemble_metrics(task, [logits_1, logits_2, ...], references)

A soup costs one model at inference; the ensemble costs k forward passes (k× compute and k×
memory), which is what it is compared against in `soup.json` (`inference_cost`). It reuses the
per-ingredient logits the merge already computed while scoring, so it costs no extra inference.

Soft vote: the mean of the ingredients' softmax probabilities (mean prediction for regression).
The returned "logits" are the log of those mean probabilities, so `metrics_from_logits` gives the
ensemble's own cross-entropy and argmax prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hf_soup.metrics import metrics_from_logits
from hf_soup.tasks import Task


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def ensemble_logits(per_model_logits: Sequence[np.ndarray], is_regression: bool = False) -> np.ndarray:
    """log(mean softmax) over the models (mean output for regression); shape of one model's logits."""
    if not per_model_logits:
        raise ValueError("an ensemble needs at least one model")
    stacked = np.stack([np.asarray(logits, dtype=np.float64) for logits in per_model_logits])
    if is_regression:
        return stacked.mean(axis=0)
    probabilities = np.mean([_softmax(logits) for logits in stacked], axis=0)
    return np.log(np.clip(probabilities, np.finfo(np.float64).tiny, None))


def ensemble_metrics(task: Task, per_model_logits: Sequence[np.ndarray], references: np.ndarray) -> dict[str, float]:
    """Task metrics + primary + loss of the soft-vote ensemble."""
    return metrics_from_logits(task, ensemble_logits(per_model_logits, task.is_regression), references)


def inference_cost(members: int) -> int:
    """Forward passes per prediction, relative to one model (a soup's cost is 1)."""
    return members
