"""How the card writes one value: a score, a metric's name, a hyperparameter, a gain interval, a markdown table.

Shared by the card's prose, tables and plot (and by the merge's console table, which prints the same
gain cells), so that a number reads the same wherever it appears.
"""

from __future__ import annotations

import json
from typing import Any

from hf_soup.recipes.catalog import CATALOG

METRIC_NAMES = {
    "accuracy": "accuracy",
    "f1": "F1",
    "matthews_correlation": "Matthews correlation",
    "pearson": "Pearson",
    "spearmanr": "Spearman",
    "f1_accuracy_mean": "mean of F1 and accuracy",
    "pearson_spearmanr_mean": "mean of Pearson and Spearman",
    "loss": "loss",
}


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _metric_name(name: str) -> str:
    return METRIC_NAMES.get(name, name.replace("_", " "))


def _primary(scores: dict[str, Any] | None) -> Any:
    return (scores or {}).get("primary")


def _reported_metrics(scores: dict[str, Any] | None) -> dict[str, float]:
    """The task's metrics in a score dict: everything but the ranking alias `primary` and `loss`."""
    return {k: v for k, v in (scores or {}).items() if k not in ("primary", "loss") and isinstance(v, (int, float))}


def _table(header: list[str], rows: list[list[str]]) -> str:
    def escape(cell: str) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _hp(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _recipe_title(recipe: str) -> str:
    return CATALOG[recipe].title if recipe in CATALOG else f"{recipe} soup"


def _recipe_tag(recipe: str) -> str:
    return CATALOG[recipe].tag if recipe in CATALOG else f"{recipe}-soup"


def gain_cell(gain: dict[str, Any] | None) -> str:
    """`+0.0108 [-0.0072, +0.0289]`, or — for the best single itself and the oracle."""
    if not isinstance(gain, dict) or not all(
        isinstance(gain.get(k), (int, float)) for k in ("estimate", "low", "high")
    ):
        return "—"
    return f"{gain['estimate']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}]"
