"""Calibration (ECE, NLL, Brier) of every row, checked against independent computations from saved logits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from soup_factory import run_merge
from test_extra_tests import sweep  # noqa: F401 - the fixture

from hf_soup.calibration import calibration_metrics


def reference_ece(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE written the textbook way (Guo et al. 2017): loop over rows into (lo, hi] bins."""
    probabilities = torch.softmax(torch.tensor(logits, dtype=torch.float64), -1).numpy()
    edges = np.linspace(0.0, 1.0, bins + 1)
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, p in enumerate(probabilities):
        confidence = p.max()
        for b in range(bins):
            if edges[b] < confidence <= edges[b + 1] or (b == 0 and confidence == 0):
                members[b].append(i)
                break
    total = 0.0
    for rows in members:
        if rows:
            accuracy = np.mean([probabilities[i].argmax() == labels[i] for i in rows])
            confidence = np.mean([probabilities[i].max() for i in rows])
            total += len(rows) / len(labels) * abs(accuracy - confidence)
    return total


def test_known_values():
    # two rows, both predicted class 0 at p = e/(e+1) = 0.731; one right: ECE = |0.5 - 0.731|
    logits = np.array([[1.0, 0.0], [1.0, 0.0]])
    found = calibration_metrics(logits, np.array([0, 1]))
    p = np.e / (np.e + 1)
    assert found["ece"] == pytest.approx(abs(0.5 - p))
    assert found["nll"] == pytest.approx((-np.log(p) - np.log(1 - p)) / 2)
    assert found["brier"] == pytest.approx(((1 - p) ** 2 * 2 + 2 * p**2) / 2)
    perfect = calibration_metrics(np.array([[50.0, 0.0], [0.0, 50.0]]), np.array([0, 1]))
    assert perfect["ece"] == pytest.approx(0.0, abs=1e-12) and perfect["brier"] == pytest.approx(0.0, abs=1e-12)


def test_every_row_recomputed_from_saved_logits(sweep, tmp_path, capsys):  # noqa: F811
    runs, ood, _ = sweep
    predictions = tmp_path / "p.npz"
    code, out, err = run_merge(
        [
            "--ingredients", runs, "--output", tmp_path / "s", "--predictions_file", predictions,
            "--extra_test_files", f"ood={ood}",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    soup = json.loads((tmp_path / "s" / "soup.json").read_text())
    saved = np.load(predictions)
    checked = 0
    for key in ("best_single", "uniform", "greedy", "ensemble"):
        for split, suffix in (("test", ""), ("extra:ood", "@ood")):
            logits, labels = saved[key + suffix], saved["references" + suffix]
            recorded = soup["results"][key]["calibration"][split]
            assert recorded["ece"] == pytest.approx(reference_ece(logits, labels), abs=1e-9)
            nll = torch.nn.functional.cross_entropy(torch.tensor(logits, dtype=torch.float64), torch.tensor(labels))
            assert recorded["nll"] == pytest.approx(float(nll), abs=1e-9)
            checked += 1
    assert checked == 8
    assert all(set(i["calibration"]) == {"test", "extra:ood"} for i in soup["ingredients"])
    assert "calibration (lower is better)" in out
    card = (tmp_path / "s" / "README.md").read_text()
    assert "### Calibration" in card and "ood ECE / NLL / Brier" in card
