"""Model stock and the filtered uniform soup, against their formulas."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hf_soup.recipes.catalog import CATALOG
from hf_soup.recipes.filtered_uniform import filter_ingredients, filtered_uniform_soup
from hf_soup.recipes.model_stock import model_stock_ratio, model_stock_soup, model_stock_summary
from hf_soup.recipes.uniform import uniform_soup
from hf_soup.stats import chance_score
from hf_soup.tasks import get_task


def _reference_model_stock(ingredients: list[dict], anchor: dict, name: str) -> torch.Tensor:
    """The paper's formula in float64, written the obvious way."""
    w0 = anchor[name].double()
    deltas = [ingredient[name].double() - w0 for ingredient in ingredients]
    n = len(deltas)
    if n == 1:
        return ingredients[0][name].double()
    cosines = [
        float(torch.dot(a.flatten(), b.flatten()) / (a.norm() * b.norm())) for a, b in itertools.combinations(deltas, 2)
    ]
    c = sum(cosines) / len(cosines)
    t = n * c / (1 + (n - 1) * c)
    mean = sum(ingredient[name].double() for ingredient in ingredients) / n
    return t * mean + (1 - t) * w0


def _states(n: int, seed: int = 0, spread: float = 0.1) -> tuple[list[dict], dict]:
    generator = torch.Generator().manual_seed(seed)
    anchor = {
        "encoder.weight": torch.randn(6, 5, generator=generator),
        "encoder.bias": torch.randn(5, generator=generator),
        "classifier.weight": torch.randn(2, 5, generator=generator),
    }
    shared = {name: torch.randn(t.shape, generator=generator) for name, t in anchor.items()}  # a common direction
    ingredients = [
        {
            name: t + spread * (2 * shared[name] + torch.randn(t.shape, generator=generator))
            for name, t in anchor.items()
        }
        for _ in range(n)
    ]
    return ingredients, anchor


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_model_stock_matches_the_formula(n):
    ingredients, anchor = _states(n, seed=n)
    result = model_stock_soup(ingredients, anchor)
    for name in anchor:
        expected = _reference_model_stock(ingredients, anchor, name)
        assert torch.allclose(result.state[name].double(), expected, atol=1e-6), name
        assert result.state[name].dtype == torch.float32
    assert set(result.ratios) == set(anchor) and not result.copied
    if n == 1:
        assert all(t == 1.0 for t in result.ratios.values())
    else:  # correlated deltas: 0 < t < 1, and t grows with the angle's cosine
        assert all(0 < t < 1 for t in result.ratios.values())


def test_model_stock_ratio_edge_cases():
    assert model_stock_ratio(0.5, 2) == pytest.approx(2 / 3)
    assert model_stock_ratio(1.0, 7) == 1.0  # identical directions: the mean itself
    assert model_stock_ratio(0.0, 3) == 0.0 and model_stock_ratio(-0.4, 3) == 0.0  # the anchor
    assert model_stock_ratio(None, 4) == 1.0 and model_stock_ratio(0.3, 1) == 1.0
    with pytest.raises(ValueError):
        model_stock_ratio(0.5, 0)


def test_frozen_tensors_and_integer_buffers_are_copied_and_tied_tensors_stay_tied():
    ingredients, anchor = _states(3)
    frozen = torch.randn(4, 4)
    for state in [*ingredients, anchor]:
        state["embeddings.weight"] = frozen.clone()  # no ingredient changed it
        state["position_ids"] = torch.arange(4)
    for state in ingredients:
        state["decoder.weight"] = state["encoder.weight"]  # tied, as in-memory state dicts share storage
    anchor["decoder.weight"] = anchor["encoder.weight"]
    result = model_stock_soup(ingredients, anchor)
    assert result.copied == ["embeddings.weight"] and "embeddings.weight" not in result.ratios
    assert torch.equal(result.state["embeddings.weight"], frozen)
    assert torch.equal(result.state["position_ids"], torch.arange(4))
    assert result.state["decoder.weight"] is result.state["encoder.weight"]
    summary = model_stock_summary(result)
    assert summary["summary"]["tensors_mixed"] == 3 and summary["summary"]["tensors_copied"] == 1
    assert [row["name"] for row in summary["tensors"]] == list(result.ratios)
    assert summary["summary"]["t_min"] <= summary["summary"]["t_median"] <= summary["summary"]["t_max"]


def test_opposite_or_zero_deltas_fall_back_as_documented():
    anchor = {"w": torch.zeros(10)}
    delta = torch.linspace(-1, 1, 10)
    opposite = model_stock_soup([{"w": anchor["w"] + delta}, {"w": anchor["w"] - delta}], anchor)
    assert opposite.ratios["w"] == 0.0 and torch.equal(opposite.state["w"], anchor["w"])  # cos = -1: the anchor
    # one ingredient did not move this tensor: the angle comes from the two that did
    moved = [{"w": anchor["w"] + delta}, {"w": anchor["w"] + 2 * delta}, {"w": anchor["w"].clone()}]
    partial = model_stock_soup(moved, anchor)
    assert partial.cosines["w"] == pytest.approx(1.0)
    assert torch.allclose(partial.state["w"], anchor["w"] + delta)  # t = 1: the mean of the three
    lonely = model_stock_soup([{"w": anchor["w"] + delta}, {"w": anchor["w"].clone()}], anchor)
    assert lonely.cosines["w"] is None and lonely.ratios["w"] == 1.0  # no angle to measure: the mean


def test_model_stock_streams_in_chunks_with_the_same_result():
    ingredients, anchor = _states(3, seed=9)
    whole = model_stock_soup(ingredients, anchor)
    chunked = model_stock_soup(ingredients, anchor, chunk_size=7)
    for name in anchor:
        assert torch.allclose(whole.state[name], chunked.state[name], atol=1e-6)
        assert whole.ratios[name] == pytest.approx(chunked.ratios[name], rel=1e-9)


def test_model_stock_refuses_an_anchor_that_does_not_fit():
    ingredients, anchor = _states(2)
    with pytest.raises(ValueError, match=r"no tensor 'classifier\.weight'"):
        model_stock_soup(ingredients, {k: v for k, v in anchor.items() if k != "classifier.weight"})
    with pytest.raises(ValueError, match="shape"):
        model_stock_soup(ingredients, {**anchor, "encoder.bias": torch.zeros(3)})


def test_filter_drops_diverged_chance_level_and_far_worse_ingredients():
    scores = [0.70, 0.68, float("nan"), 0.50, 0.62, 0.69]
    losses = [0.6, 0.6, 0.7, 0.69, 0.65, float("inf")]
    decision = filter_ingredients(scores, losses, chance=0.52, margin=0.05)
    assert decision.kept == [0, 1]
    assert set(decision.dropped) == {2, 3, 4, 5}
    assert "diverged" in decision.dropped[2] and "diverged" in decision.dropped[5]
    assert "chance" in decision.dropped[3] and "below the best" in decision.dropped[4]
    # the margin is measured from the best surviving ingredient, so a NaN never sets it
    assert filter_ingredients([float("nan"), 0.6, 0.58], [None] * 3, chance=0.5, margin=0.03).kept == [1, 2]
    # nothing survives: the best alone
    assert filter_ingredients([0.4, 0.45], [0.7, 0.7], chance=0.5, margin=0.1).kept == [1]
    with pytest.raises(ValueError):
        filter_ingredients([0.5], [0.1], chance=0.0, margin=-1)


def test_filtered_uniform_soup_is_the_uniform_soup_of_the_kept():
    ingredients, _ = _states(4, seed=3)
    decision, state = filtered_uniform_soup(ingredients, [0.8, 0.3, 0.79, 0.78], [0.5] * 4, chance=0.5, margin=0.05)
    assert decision.kept == [0, 2, 3] and list(decision.dropped) == [1]
    expected = uniform_soup([ingredients[i] for i in sorted(decision.kept)])
    assert all(torch.equal(state[name], expected[name]) for name in expected)
    _, everything = filtered_uniform_soup(ingredients, [0.8, 0.79, 0.78, 0.77], [0.5] * 4, chance=0.5, margin=0.05)
    uniform = uniform_soup(ingredients)
    assert all(torch.equal(everything[name], uniform[name]) for name in uniform)  # bitwise: one scoring suffices
    assert {"model-stock", "filtered-uniform"} <= set(CATALOG)


def test_chance_score_is_the_best_constant_prediction():
    references = np.array([1] * 68 + [0] * 32)
    assert chance_score(get_task("rte"), references) == pytest.approx(0.68)
    assert chance_score(get_task("cola"), references) == 0.0
    f1_all_positive = 2 * 0.68 / (1 + 0.68)
    assert chance_score(get_task("mrpc"), references) == pytest.approx((f1_all_positive + 0.68) / 2)
    assert chance_score(get_task("stsb"), np.array([1.0, 2.0])) == 0.0
