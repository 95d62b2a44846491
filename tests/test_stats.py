"""hf_soup.stats: the paired bootstrap behind every 'gain over the best single' the product prints."""

from __future__ import annotations

import numpy as np
import pytest

from hf_soup.metrics import compute_task_metrics
from hf_soup.stats import (
    GainGroup,
    bootstrap_draws,
    bootstrap_gain,
    bootstrap_mean_gain,
    interval_from_draws,
    resampled_primary,
)
from hf_soup.tasks import Task, get_task

AG_NEWS_LIKE = Task("four", ("text",), ("a", "b", "c", "d"), ("accuracy",), "accuracy", ("accuracy",), ("validation",))
CLASSIFICATION = ["rte", "mrpc", "cola"]


def _labels(rng, n: int, k: int = 2) -> np.ndarray:
    return rng.integers(0, k, size=n)


def _noisy(rng, references: np.ndarray, accuracy: float, k: int = 2) -> np.ndarray:
    wrong = rng.random(len(references)) > accuracy
    return np.where(wrong, (references + rng.integers(1, k, size=len(references))) % k, references)


@pytest.mark.parametrize("name", [*CLASSIFICATION, "stsb"])
def test_vectorised_metrics_equal_hf_soup_metrics_on_the_rows_as_they_are(name):
    task = get_task(name)
    rng = np.random.default_rng(1)
    if task.is_regression:
        references = rng.uniform(0, 5, 300)
        cases = [references + rng.normal(0, 1, 300), np.round(references), np.full(300, 2.5)]
    else:
        references = _labels(rng, 300)
        cases = [_noisy(rng, references, 0.7), np.zeros(300, dtype=int), np.ones(300, dtype=int)]
    identity = np.arange(300)[None, :]
    for predictions in cases:  # constant predictions included: MCC / correlations 0, F1 0 or defined
        expected = compute_task_metrics(task, predictions, references)["primary"]
        assert resampled_primary(task, predictions, references, identity)[0] == pytest.approx(expected, abs=1e-12)


def test_vectorised_metrics_equal_hf_soup_metrics_on_a_resample_and_for_four_classes():
    rng = np.random.default_rng(2)
    for task, k in ((get_task("cola"), 2), (get_task("mrpc"), 2), (AG_NEWS_LIKE, 4)):
        references = _labels(rng, 200, k)
        predictions = _noisy(rng, references, 0.6, k)
        indices = rng.integers(0, 200, size=(3, 200))
        got = resampled_primary(task, predictions, references, indices)
        for row, draw in zip(got, indices):
            assert row == pytest.approx(compute_task_metrics(task, predictions[draw], references[draw])["primary"])


@pytest.mark.parametrize("name", ["rte", "mrpc", "cola", "stsb"])
def test_interval_contains_the_estimate_and_shrinks_with_more_rows(name):
    task = get_task(name)
    rng = np.random.default_rng(3)
    widths = []
    for n in (200, 3200):
        if task.is_regression:
            references = rng.uniform(0, 5, n)
            candidate, baseline = references + rng.normal(0, 0.8, n), references + rng.normal(0, 1.0, n)
        else:
            references = _labels(rng, n)
            candidate, baseline = _noisy(rng, references, 0.75), _noisy(rng, references, 0.7)
        gain = bootstrap_gain(task, references, candidate, baseline, n_resamples=300)
        assert gain.low < gain.estimate < gain.high
        assert gain.standard_error > 0
        widths.append(gain.high - gain.low)
    assert widths[1] < widths[0] / 2  # 16x the rows: about a quarter of the width (1/sqrt(16))


def test_identical_predictions_give_exactly_zero():
    task = get_task("mrpc")
    rng = np.random.default_rng(4)
    references = _labels(rng, 400)
    predictions = _noisy(rng, references, 0.8)
    gain = bootstrap_gain(task, references, predictions, predictions.copy())
    assert (gain.estimate, gain.low, gain.high, gain.standard_error) == (0.0, 0.0, 0.0, 0.0)


def test_right_on_ten_more_rows_of_a_thousand_is_a_positive_interval():
    task = get_task("rte")
    rng = np.random.default_rng(5)
    references = _labels(rng, 1000)
    baseline = _noisy(rng, references, 0.7)
    wrong = np.flatnonzero(baseline != references)[:10]
    candidate = baseline.copy()
    candidate[wrong] = references[wrong]  # the soup fixes 10 rows and breaks none
    gain = bootstrap_gain(task, references, candidate, baseline)
    assert gain.estimate == pytest.approx(0.01)
    assert 0 < gain.low < gain.estimate < gain.high
    # the same 10 rows fixed and 10 others broken: no evidence either way
    broken = np.flatnonzero(baseline == references)[:10]
    mixed = candidate.copy()
    mixed[broken] = 1 - references[broken]
    even = bootstrap_gain(task, references, mixed, baseline)
    assert even.estimate == pytest.approx(0.0) and even.low < 0 < even.high


def test_logits_are_turned_into_predictions_and_the_result_is_seeded():
    task = get_task("rte")
    rng = np.random.default_rng(6)
    references = _labels(rng, 300)
    logits_a, logits_b = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    from_logits = bootstrap_gain(task, references, logits_a, logits_b, seed=7)
    from_ids = bootstrap_gain(task, references, logits_a.argmax(1), logits_b.argmax(1), seed=7)
    assert from_logits == from_ids
    other_seed = bootstrap_gain(task, references, logits_a, logits_b, seed=8)
    assert other_seed.estimate == from_ids.estimate and other_seed.low != from_ids.low


def test_pooled_groups_share_rows_within_a_group_and_count_pairs_equally():
    task = get_task("rte")
    rng = np.random.default_rng(9)
    references = _labels(rng, 500)
    base = _noisy(rng, references, 0.6)
    better = np.where(rng.random(500) < 0.3, references, base)
    # Two replicates with the same predictions: the pooled mean is the single pair's, on every draw.
    single_estimate, single = bootstrap_draws([GainGroup(task, references, [(better, base)])], n_resamples=300)
    pooled_estimate, pooled = bootstrap_draws(
        [GainGroup(task, references, [(better, base), (better, base)])], n_resamples=300
    )
    assert pooled_estimate == pytest.approx(single_estimate) and np.allclose(pooled, single)
    # A second, independent task halves the variance of the mean (roughly), never the estimate.
    other = GainGroup(task, references.copy(), [(better, base)])
    two = bootstrap_mean_gain([GainGroup(task, references, [(better, base)]), other], n_resamples=2000)
    one = bootstrap_mean_gain([GainGroup(task, references, [(better, base)])], n_resamples=2000)
    assert two.estimate == pytest.approx(one.estimate)
    assert two.standard_error < 0.85 * one.standard_error


def test_bad_inputs_are_refused():
    task = get_task("rte")
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_mean_gain([])
    with pytest.raises(ValueError, match="predictions for 3 test rows"):
        bootstrap_gain(task, np.array([0, 1, 0]), np.array([0, 1]), np.array([0, 1, 1]))


def test_a_pair_without_baseline_gives_the_mean_score_and_its_interval():
    task = get_task("rte")
    rng = np.random.default_rng(10)
    references = _labels(rng, 400)
    a, b = _noisy(rng, references, 0.7), _noisy(rng, references, 0.6)
    score = bootstrap_mean_gain([GainGroup(task, references, [(a, None), (b, None)])], n_resamples=500)
    expected = (np.mean(a == references) + np.mean(b == references)) / 2
    assert score.estimate == pytest.approx(expected) and score.low < expected < score.high


def test_macro_f1_and_metrics_without_a_vectorised_form_agree_with_hf_soup_metrics():
    rng = np.random.default_rng(11)
    references = _labels(rng, 150, 4)
    predictions = _noisy(rng, references, 0.5, 4)
    predictions[predictions == 3] = 2  # class 3 never predicted: its F1 is 0
    indices = rng.integers(0, 150, size=(4, 150))
    macro = Task("m", ("text",), ("a", "b", "c", "d"), ("macro_f1",), "macro_f1", ("macro_f1",), ("validation",))
    from sklearn.metrics import f1_score

    got = resampled_primary(macro, predictions, references, indices)
    for value, draw in zip(got, indices):
        expected = f1_score(references[draw], predictions[draw], average="macro", zero_division=0)
        assert value == pytest.approx(expected)
    # a metric the module has no closed form for goes through hf_soup.metrics draw by draw
    both = Task("b", ("text",), ("a", "b"), ("f1", "accuracy"), "accuracy", ("accuracy",), ("validation",))
    assert np.allclose(
        resampled_primary(both, predictions % 2, references % 2, indices),
        [compute_task_metrics(both, (predictions % 2)[d], (references % 2)[d])["primary"] for d in indices],
    )


def _one_matrix_draws(task, references, candidate, baseline, n_resamples, seed):
    """The bootstrap as one (n_resamples, n) index matrix: what the chunked draws must reproduce."""
    indices = np.random.default_rng(seed).integers(0, len(references), size=(n_resamples, len(references)))
    return resampled_primary(task, candidate, references, indices) - resampled_primary(
        task, baseline, references, indices
    )


@pytest.mark.parametrize("name", ["rte", "stsb"])
def test_chunked_draws_are_the_draws_of_one_matrix(name, monkeypatch):
    from hf_soup import stats

    task = get_task(name)
    rng = np.random.default_rng(5)
    if task.is_regression:
        references = rng.uniform(0, 5, 301)
        candidate, baseline = references + rng.normal(0, 1, 301), references + rng.normal(0, 1.2, 301)
    else:
        references = _labels(rng, 301)
        candidate, baseline = _noisy(rng, references, 0.8), _noisy(rng, references, 0.7)
    expected = _one_matrix_draws(task, references, candidate, baseline, 500, 3)
    monkeypatch.setattr(stats, "CHUNK_ELEMENTS", 301 * 7 + 5)  # 7 draws a chunk, the last one shorter
    _, chunked = bootstrap_draws([GainGroup(task, references, [(candidate, baseline)])], n_resamples=500, seed=3)
    assert np.array_equal(chunked, expected)
    gain = bootstrap_gain(task, references, candidate, baseline, n_resamples=500, seed=3)
    before = interval_from_draws(gain.estimate, expected, seed=3)  # the interval one matrix gave
    assert (gain.low, gain.high, gain.standard_error) == (before.low, before.high, before.standard_error)


def test_bootstrap_memory_does_not_grow_with_the_test_set():
    import tracemalloc

    task = get_task("qqp")  # accuracy and F1: the confusion-count path
    peaks = {}
    for n in (5_000, 40_000):
        rng = np.random.default_rng(0)
        references = _labels(rng, n)
        candidate, baseline = _noisy(rng, references, 0.85), _noisy(rng, references, 0.84)
        tracemalloc.start()
        bootstrap_gain(task, references, candidate, baseline)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # one (2000, 40000) int64 index matrix alone is 640 MB; chunks keep the peak near a few 16 MiB arrays
    assert peaks[40_000] < 120e6, peaks
    assert peaks[40_000] < 2 * peaks[5_000] + 20e6, peaks
