"""The ensemble's inference cost against the soup's, measured from the merge's own timed forward passes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from soup_factory import run_merge
from test_extra_tests import sweep  # noqa: F401 - the fixture

from hf_soup.inference_cost import measure


def test_measure_uses_ingredient_passes_for_the_ensemble_and_the_median_soup_pass():
    logits = [np.zeros((10, 2))] * 3
    block = measure([1.0, 2.0, 3.0, 0.5, 2.5, 1.0], 3, 10, logits, False, "cpu")
    assert block["soup_rows_per_second"] == pytest.approx(10 / 1.0)  # median of 0.5, 2.5, 1.0
    assert block["ensemble_cost"] == pytest.approx(6.0, rel=1e-2)  # 1 + 2 + 3 s (+ the averaging)
    assert block["ensemble_rows_per_second"] == pytest.approx(10 / 6.0, rel=1e-2)
    assert measure([1.0, 2.0], 3, 10, logits, False, "cpu") is None  # not every ingredient timed


def test_merge_records_and_says_the_cost(sweep, tmp_path, capsys):  # noqa: F811
    code, out, err = run_merge(["--ingredients", sweep[0], "--recipe", "greedy", "--output", tmp_path / "s"], capsys)
    assert code == 0, err
    soup = json.loads((tmp_path / "s" / "soup.json").read_text())
    block = soup["inference_speed"]
    assert block["rows"] == soup["split"]["test_size"] and block["members"] == 3
    # the soups' own test passes: the uniform soup's, and the greedy soup's unless it is one ingredient
    assert block["soup_passes"] == 1 + (len(soup["results"]["greedy"]["kept"]) > 1)
    assert block["ensemble_cost"] == pytest.approx(block["soup_rows_per_second"] / block["ensemble_rows_per_second"])
    results = soup["results"]
    expected = 100 * (results["ensemble"]["test"]["primary"] - results["soup"]["test"]["primary"])
    assert block["ensemble_gain_points"] == pytest.approx(expected)
    sentence = f"the 3-model ensemble would cost {block['ensemble_cost']:.1f}× the inference for"
    assert sentence in out and sentence in (tmp_path / "s" / "README.md").read_text()
