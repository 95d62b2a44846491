"""The card's markdown tables: this model beside the baselines, the ingredients, the greedy trace, the
learned coefficients."""

from __future__ import annotations

from typing import Any

from hf_soup.card.cells import _hp, _metric_name, _num, _primary, _recipe_title, _reported_metrics, _table, gain_cell
from hf_soup.recipes.catalog import LEARNED_NOTE, result_rows
from hf_soup.soup_file import GAIN_KEY


def results_table(soup: dict[str, Any]) -> str:
    results, primary = soup["results"], _metric_name(soup["primary_metric"])
    n = len(soup["ingredients"])
    recipe_title = _recipe_title(soup["recipe"])

    def row(title: str, scores: dict[str, Any], cost: str) -> list[str]:
        metrics = " · ".join(f"{_metric_name(k)} {_num(v)}" for k, v in _reported_metrics(scores.get("test")).items())
        heldout, test = _num(_primary(scores.get("heldout"))), _num(_primary(scores.get("test")))
        return [title, heldout, test, metrics or "—", cost, gain_cell(scores.get(GAIN_KEY))]

    this = f"{recipe_title}; {LEARNED_NOTE}" if soup["recipe"] == "learned" else recipe_title
    rows = [row(f"**this model** ({this})", results["soup"], "1×")]
    for display in result_rows():
        key = display.key
        if isinstance(results.get(key), dict):
            entry = results[key]
            cost = f"{entry.get('inference_cost', entry.get('members', n))}×" if key == "ensemble" else "1×"
            rows.append(row(display.card_label(entry, soup), entry, cost))
    header = [
        "model",
        f"held-out {primary}",
        f"test {primary}",
        "test metrics",
        "inference cost",
        "test gain vs best single [95% CI]",
    ]
    table = _table(header, rows)
    if isinstance(results.get("learned"), dict):
        table += (
            "\n\nThe learned soup's mixing coefficients were fitted on the held-out split, so its held-out "
            "score is not selection-free like the others': compare it on test."
        )
    return table


def ingredients_table(soup: dict[str, Any]) -> str:
    """One row per ingredient with a column per setting that differs between them; the settings they
    all share go in one line above the table (a sweep records ~25 settings, most of them fixed)."""
    ingredients = soup["ingredients"]
    hp_keys: list[str] = []
    for ingredient in ingredients:
        hp_keys += [k for k in (ingredient.get("hyperparameters") or {}) if k not in hp_keys]

    def cell(ingredient: dict[str, Any], key: str) -> str:
        if key == "seed":
            return _hp(ingredient.get("seed", "—"))
        hps = ingredient.get("hyperparameters") or {}
        return _hp(hps[key]) if key in hps else "—"

    keys = [*hp_keys, *([] if "seed" in hp_keys else ["seed"])]
    varying = [k for k in keys if len({cell(i, k) for i in ingredients}) > 1]
    shared = [f"{k} {cell(ingredients[0], k)}" for k in keys if k not in varying and cell(ingredients[0], k) != "—"]
    primary = _metric_name(soup["primary_metric"])
    header = ["#", "ingredient", *varying, f"held-out {primary}", f"test {primary}", "kept", "weight"]
    rows = [
        [
            str(i),
            f"`{ingredient['name']}`",
            *(cell(ingredient, k) for k in varying),
            _num(_primary(ingredient.get("heldout"))),
            _num(_primary(ingredient.get("test"))),
            "yes" if ingredient.get("kept") else "no",
            _num(ingredient.get("weight"), 3),
        ]
        for i, ingredient in enumerate(ingredients, 1)
    ]
    constants = f"Shared by every ingredient: {', '.join(shared)}.\n\n" if shared and len(ingredients) > 1 else ""
    return constants + _table(header, rows) + identical_text(soup)


def identical_text(soup: dict[str, Any]) -> str:
    """The runs left out of the table because their weights were byte-identical to a listed one."""
    twins = soup.get("identical_weights") or []
    if not twins:
        return ""
    pairs = "; ".join(f"`{t['name']}` = `{t['identical_to']}`" for t in twins)
    return (
        f"\n\n{len(twins)} more run(s) had weights byte-identical to a listed ingredient (same sha256) and were "
        f"counted once, in the soups and the ensemble alike: {pairs}."
    )


def trace_table(soup: dict[str, Any]) -> str | None:
    trace = soup.get("greedy_trace")
    if not trace:
        return None
    primary = _metric_name(soup["primary_metric"])
    header = ["step", "candidate", f"soup held-out {primary} with it", "accepted", "soup size"]
    rows = [
        [
            _hp(step.get("step", i)),
            f"`{step.get('candidate', '?')}`",
            _num(_primary(step.get("heldout"))),
            "yes" if step.get("accepted") else "no",
            _hp(step.get("soup_size", "—")),
        ]
        for i, step in enumerate(trace, 1)
    ]
    return _table(header, rows)


def learned_text(soup: dict[str, Any]) -> str | None:
    learned = soup.get("learned")
    if not isinstance(learned, dict):
        return None
    coefficients = learned.get("coefficients") or []
    granularity = learned.get("granularity", "model")
    if granularity == "model" and len(coefficients) == len(soup["ingredients"]):
        return _table(
            ["ingredient", "coefficient"],
            [[f"`{ing['name']}`", _num(c)] for ing, c in zip(soup["ingredients"], coefficients)],
        )
    return f"Granularity: {granularity}; {len(coefficients)} coefficients (see `soup.json` → `learned`)."
