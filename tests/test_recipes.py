"""The merge's recipe registry (hf_soup.recipes): one run per recipe of hf_soup.soup, and the order runs happen in."""

import pytest
import torch

from hf_soup.recipes import RECIPE_RUNS, RecipeContext, recipes_to_run, register_run
from hf_soup.soup import RECIPES


def test_every_recipe_has_exactly_one_run():
    assert set(RECIPE_RUNS) == set(RECIPES)


def test_baselines_run_first_and_the_requested_recipe_once():
    assert recipes_to_run("learned") == ["uniform", "greedy", "learned"]
    assert recipes_to_run("greedy") == ["uniform", "greedy"]
    assert recipes_to_run("uniform", scored=False) == ["uniform"]
    assert recipes_to_run("average-last") == ["average-last"]  # one run's checkpoints: no baselines
    assert [name for name, run in RECIPE_RUNS.items() if run.needs_scores] == ["greedy", "learned", "filtered-uniform"]
    assert recipes_to_run("uniform", compare_all=True) == [
        "uniform",
        "greedy",
        "learned",
        "model-stock",
        "filtered-uniform",
    ]
    assert recipes_to_run("average-last", compare_all=True) == ["average-last"]


def test_a_run_needs_a_recipe_of_the_maths_registry():
    with pytest.raises(ValueError, match="no such recipe"):
        register_run("stew")


def test_unscored_runs_give_weights_and_no_scores():
    states = [{"w": torch.tensor([1.0, 3.0])}, {"w": torch.tensor([3.0, 5.0])}]
    outcome = RECIPE_RUNS["uniform"].run(RecipeContext(args=None, checkpoints=states))
    assert outcome.scores is None and outcome.weights == [0.5, 0.5]
    assert torch.equal(outcome.state["w"], torch.tensor([2.0, 4.0]))
