"""Task metrics (GLUE's, and the usual ones for anyone's data) and the one primary score used to rank.

Why not `evaluate.load("glue", ...)`: the `evaluate` wheel ships no metric scripts and cannot fetch
them offline. The maths here is scikit-learn/scipy (the same calls GLUE's reference metric makes);
`load_evaluate_metric` exposes it as a real `evaluate` module loaded from a local path, for users
whose code expects an `evaluate.EvaluationModule`.

Metrics (`--metric_name`, hf_soup.tasks.METRIC_CHOICES): accuracy; f1 (binary, label id 1 is the
positive class: the second of the sorted label values); macro_f1 (unweighted mean of per-class F1
over the classes present in references or predictions, scikit-learn's default); matthews_correlation;
pearson; spearman (`spearmanr` is the same number under STS-B's historical key).

Degenerate cases are defined, not NaN, because NaN cannot be ranked:
  * Matthews correlation of constant predictions is 0 (scikit-learn's convention);
  * F1 with no positive prediction is 0 (`zero_division=0`), likewise per class in macro F1;
  * Pearson/Spearman of constant predictions is 0 (the correlation is undefined; 0 = "no signal").
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from hf_soup.tasks import Task

PRIMARY = "primary"
LOSS = "loss"


def _correlation(fn: Callable, predictions: np.ndarray, references: np.ndarray) -> float:
    if np.ptp(predictions) == 0 or np.ptp(references) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(fn(predictions, references)[0])
    return 0.0 if math.isnan(value) else value


_METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": lambda p, r: float(accuracy_score(r, p)),
    "f1": lambda p, r: float(f1_score(r, p, pos_label=1, zero_division=0)),
    "macro_f1": lambda p, r: float(f1_score(r, p, average="macro", zero_division=0)),
    "matthews_correlation": lambda p, r: float(matthews_corrcoef(r, p)),
    "pearson": lambda p, r: _correlation(pearsonr, p, r),
    "spearman": lambda p, r: _correlation(spearmanr, p, r),
}
_METRIC_FUNCTIONS["spearmanr"] = _METRIC_FUNCTIONS["spearman"]


def predictions_from_logits(task: Task, logits: np.ndarray | Sequence) -> np.ndarray:
    """Logits (n, num_labels) -> class ids, or (n, 1)/(n,) -> float scores for regression."""
    logits = np.asarray(logits)
    if task.is_regression:
        return logits.reshape(-1).astype(np.float64)
    return logits.argmax(axis=-1)


def compute_task_metrics(task: Task, predictions: np.ndarray | Sequence, references: np.ndarray | Sequence) -> dict:
    """The task's metrics plus `primary` (see hf_soup.tasks) for label-space predictions."""
    predictions = np.asarray(predictions)
    references = np.asarray(references)
    if predictions.shape[0] != references.shape[0]:
        raise ValueError(f"{predictions.shape[0]} predictions for {references.shape[0]} references")
    if predictions.shape[0] == 0:
        raise ValueError("cannot score an empty split")
    if not task.is_regression:
        predictions = predictions.astype(np.int64)
        references = references.astype(np.int64)
    results = {name: _METRIC_FUNCTIONS[name](predictions, references) for name in task.metrics}
    results[PRIMARY] = primary_score(task, results)
    return results


def primary_score(task: Task, metrics: dict[str, float]) -> float:
    """Mean of the task's primary parts (a single metric for every task but a few GLUE presets)."""
    return float(np.mean([metrics[name] for name in task.primary_parts]))


def loss_from_logits(task: Task, logits: np.ndarray, references: np.ndarray) -> float:
    """Mean cross-entropy (classification) or mean squared error (regression), in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    references = np.asarray(references)
    if task.is_regression:
        return float(np.mean((logits.reshape(-1) - references.astype(np.float64)) ** 2))
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-log_probs[np.arange(len(references)), references.astype(np.int64)].mean())


def metrics_from_logits(task: Task, logits: np.ndarray, references: np.ndarray) -> dict:
    """Task metrics + `primary` + `loss` from raw logits: what scoring and the merge record."""
    results = compute_task_metrics(task, predictions_from_logits(task, logits), references)
    results[LOSS] = loss_from_logits(task, logits, references)
    return results


def make_compute_metrics(task: Task) -> Callable[[Any], dict]:
    """A `compute_metrics` for `transformers.Trainer` (takes an `EvalPrediction`)."""

    def compute_metrics(eval_prediction: Any) -> dict:
        logits = eval_prediction.predictions
        if isinstance(logits, tuple):  # models that also return hidden states
            logits = logits[0]
        return compute_task_metrics(task, predictions_from_logits(task, logits), eval_prediction.label_ids)

    return compute_metrics


def metric_module_path() -> str:
    """Path of the bundled `evaluate` metric module (loadable offline with `evaluate.load(path)`)."""
    return os.path.join(os.path.dirname(__file__), "metric_modules", "glue_soup", "glue_soup.py")


def load_evaluate_metric(task: Task) -> Any:
    """`evaluate.load` of the bundled metric module for `task` (a preset or anyone's): works offline,
    unlike `evaluate.load("glue")`."""
    import evaluate

    if task.is_preset:
        return evaluate.load(metric_module_path(), config_name=task.name)
    return evaluate.load(metric_module_path(), config_name=task.name, task=task.to_dict())
