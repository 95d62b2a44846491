"""The recipe runs, joined from the catalog (facts) and one module per recipe (maths and run).

    from hf_soup.recipes.registry import RECIPE_RUNS, recipes_to_run
    for name in recipes_to_run("learned"):           # uniform, greedy (the baselines), then learned
        outcome = RECIPE_RUNS[name].run(context)       # a RecipeOutcome: state, weights, scores, extras

Each catalog row names its module (`hf_soup.recipes.<module>`), whose `RUNS` maps the row's name to
its run. `build_runs` refuses a row whose module or run is missing, and a run no row describes, so
a recipe cannot be half-added.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hf_soup.recipes.catalog import CATALOG, RecipeInfo
from hf_soup.recipes.context import RecipeContext, RecipeOutcome


@dataclass(frozen=True)
class RecipeRun:
    name: str
    run: Callable[[RecipeContext], RecipeOutcome]
    baseline: bool  # run on every scored merge (other recipes are compared with it), not only when asked
    needs_scores: bool  # chooses on held-out scores: refused with --skip_scoring
    alone: bool  # runs without the baselines (checkpoint averaging of one run)
    result_key: str  # its row in soup.json `results`


def build_runs(catalog: Mapping[str, RecipeInfo]) -> dict[str, RecipeRun]:
    """{name: RecipeRun} in catalog order; ValueError naming the row or module that does not fit."""
    runs: dict[str, RecipeRun] = {}
    modules = {}
    for name, info in catalog.items():
        try:
            module = modules.get(info.module) or importlib.import_module(f"hf_soup.recipes.{info.module}")
        except ModuleNotFoundError as err:
            raise ValueError(f"recipe {name!r}: no module hf_soup.recipes.{info.module} (its maths and run)") from err
        modules[info.module] = module
        function = getattr(module, "RUNS", {}).get(name)
        if function is None:
            raise ValueError(f"recipe {name!r}: hf_soup.recipes.{info.module}.RUNS has no run for it")
        runs[name] = RecipeRun(name, function, info.baseline, info.needs_scores, info.alone, info.result_key)
    for module_name, module in modules.items():
        extra = sorted(set(getattr(module, "RUNS", {})) - set(catalog))
        if extra:
            raise ValueError(f"hf_soup.recipes.{module_name}: run {extra[0]!r} has no catalog row")
    return runs


RECIPE_RUNS: dict[str, RecipeRun] = build_runs(CATALOG)


def recipes_to_run(recipe: str, *, scored: bool = True, compare_all: bool = False) -> list[str]:
    """The runs of one merge, in order: the baselines (when scored), then the requested recipe;
    with `compare_all`, every recipe that mixes a sweep's ingredients (not checkpoint averaging)."""
    if RECIPE_RUNS[recipe].alone or not scored:
        return [recipe]
    chosen = [name for name, run in RECIPE_RUNS.items() if run.baseline or (compare_all and not run.alone)]
    return chosen + ([recipe] if recipe not in chosen else [])
