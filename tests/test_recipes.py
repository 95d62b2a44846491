"""The recipe catalog and registry (hf_soup.recipes): one module per catalog row, and the order runs happen in."""

import dataclasses
import pkgutil
import re
import subprocess
import sys

import pytest
import torch

import hf_soup.recipes
from hf_soup.recipes.catalog import CATALOG, COMPARISONS, result_rows
from hf_soup.recipes.context import RecipeContext
from hf_soup.recipes.registry import RECIPE_RUNS, build_runs, recipes_to_run

# Modules of the package that are not a recipe: what the recipes share.
SHARED = {"catalog", "averaging", "context", "registry"}


def test_every_catalog_row_has_a_module_with_its_run_and_every_module_a_row():
    assert list(RECIPE_RUNS) == list(CATALOG)
    modules = {info.module for info in CATALOG.values()}
    found = {module.name for module in pkgutil.iter_modules(hf_soup.recipes.__path__)} - SHARED
    assert modules == found
    for name, info in CATALOG.items():
        module = __import__(f"hf_soup.recipes.{info.module}", fromlist=["RUNS"])
        assert RECIPE_RUNS[name].run is module.RUNS[name]
        assert RECIPE_RUNS[name].result_key == info.result_key and RECIPE_RUNS[name].alone == info.alone


def test_a_row_without_a_module_or_a_run_is_refused():
    stew = dataclasses.replace(CATALOG["uniform"], name="stew", module="stew")
    with pytest.raises(ValueError, match=re.escape("'stew': no module hf_soup.recipes.stew")):
        build_runs({**CATALOG, "stew": stew})
    no_run = dataclasses.replace(CATALOG["greedy"], name="greedy-twice")
    with pytest.raises(ValueError, match=re.escape("'greedy-twice': hf_soup.recipes.greedy.RUNS has no run")):
        build_runs({**CATALOG, "greedy-twice": no_run})
    without_average_last = {name: info for name, info in CATALOG.items() if name != "average-last"}
    with pytest.raises(ValueError, match=re.escape("hf_soup.recipes.uniform: run 'average-last' has no catalog row")):
        build_runs(without_average_last)


def test_every_results_row_has_one_display_in_table_order():
    keys = [row.key for row in result_rows()]
    assert len(keys) == len(set(keys))
    assert keys == [
        "best_single",
        "majority",
        "uniform",
        "filtered-uniform",
        "greedy",
        "greedy-metric",
        "greedy-loss",
        "model-stock",
        "learned",
        "ensemble",
        "oracle_best_single",
    ]
    recipe_keys = {info.result_key for info in CATALOG.values()}
    assert recipe_keys <= set(keys) and {row.key for row in COMPARISONS}.isdisjoint(recipe_keys)


def test_the_catalog_loads_no_torch():
    code = "import sys, hf_soup.recipes.catalog; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


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


def test_unscored_runs_give_weights_and_no_scores():
    states = [{"w": torch.tensor([1.0, 3.0])}, {"w": torch.tensor([3.0, 5.0])}]
    outcome = RECIPE_RUNS["uniform"].run(RecipeContext(args=None, checkpoints=states))
    assert outcome.scores is None and outcome.weights == [0.5, 0.5]
    assert torch.equal(outcome.state["w"], torch.tensor([2.0, 4.0]))


def test_model_stock_without_an_anchor_says_so():
    states = [{"w": torch.tensor([1.0, 3.0])}, {"w": torch.tensor([3.0, 5.0])}]
    with pytest.raises(ValueError, match="needs its anchor"):
        RECIPE_RUNS["model-stock"].run(RecipeContext(args=None, checkpoints=states))


def test_recipes_import_no_io_and_nothing_of_merge_or_card():
    """The package's own imports, at any level (type-checking ones aside): the recipes and the statistics."""
    import ast
    from pathlib import Path

    allowed = ("hf_soup.recipes", "hf_soup.stats")
    for path in sorted(Path(hf_soup.recipes.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        typing_only = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
            for node in ast.walk(block)
        }
        imported = [
            name
            for node in ast.walk(tree)
            if id(node) not in typing_only
            for name in (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in getattr(node, "names", [])]
            )
            if isinstance(node, (ast.Import, ast.ImportFrom))
        ]
        ours = [name for name in imported if name.startswith("hf_soup")]
        assert all(name.startswith(allowed) for name in ours), (path.name, ours)
