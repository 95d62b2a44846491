"""Every recipe's facts in one table: what the CLI accepts, how the merge runs it, how tables and the card show it.

    from hf_soup.recipes.catalog import CATALOG, result_rows
    CATALOG["greedy"].title                   # "greedy soup"
    [row.key for row in result_rows()]        # soup.json `results` keys in the order tables show them

Torch-free on purpose: the card and the printed table read it without loading any model code. The
maths and the run of a recipe live in `hf_soup.recipes.<module>` (the row's `module`);
`hf_soup.recipes.registry` joins the two and refuses a row without a module, or a module without a row.

Adding a recipe (e.g. TIES): one module holding its maths and its `RUNS`, and one `RecipeInfo` here.
A label is a function of the results row and the whole soup.json, so it can name what the row kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Label = Callable[[dict[str, Any], dict[str, Any]], str]  # (results row, soup.json) -> text
Sentence = Callable[[dict[str, Any], str, str], str]  # (soup.json, criterion's name, primary metric's name) -> text

# The card's qualifier of a score fitted on the split it is measured on.
LEARNED_NOTE = "held-out score fitted on held-out"


def _n(soup: dict[str, Any]) -> int:
    return len(soup["ingredients"])


def _kept(row: dict[str, Any]) -> int:
    return len(row.get("kept") or [])


def _named(row: dict[str, Any]) -> str:
    return f" (`{row['name']}`)" if row.get("name") else ""


@dataclass(frozen=True)
class RowDisplay:
    """How one soup.json `results` row is shown.

    `table_label`: the table `python -m hf_soup.merge` prints; `card_label`: the card's results table;
    `plot_style`: matplotlib keywords of its marker in soup.png (None: not drawn); `position`: where
    the row stands in both tables (ascending), so that baselines, soups and references keep their order.
    """

    key: str
    position: int
    table_label: Label
    card_label: Label
    plot_style: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RecipeInfo:
    """One recipe: its name (`--recipe`), display facts, and what its run needs and gives.

    `rows`: the `results` rows its run writes (greedy under `--compare all` also writes the other
    criterion's); empty when it reuses another recipe's row (`result_key`).
    `needs_scores`: chooses on scored ingredients, so refused with `--skip_scoring`;
    `needs_heldout`: uses the held-out split (to choose or to fit); `needs_anchor`: needs the point
    every ingredient was fine-tuned from; `baseline`: run on every scored merge, so every soup is
    compared with it; `alone`: runs without the baselines (checkpoint averaging of one run).
    """

    name: str
    module: str
    title: str
    tag: str
    summary: str
    sentence: Sentence
    rows: tuple[RowDisplay, ...] = ()
    needs_scores: bool = False
    needs_heldout: bool = False
    needs_anchor: bool = False
    baseline: bool = False
    alone: bool = False
    result_key: str = ""

    def __post_init__(self) -> None:
        if not self.result_key:
            object.__setattr__(self, "result_key", self.name)


# ----------------------------------------------------------------------------- the recipes' sentences


def _uniform_sentence(soup: dict[str, Any], criterion: str, primary: str) -> str:
    return f"**Uniform soup**: the weights of all {_n(soup)} fine-tuned ingredients are averaged with equal weights."


def _average_last_sentence(soup: dict[str, Any], criterion: str, primary: str) -> str:
    return (
        f"**Checkpoint averaging**: the last {_n(soup)} checkpoints of one fine-tuning run are averaged with equal "
        "weights, smoothing the end of the optimisation trajectory."
    )


def _greedy_sentence(soup: dict[str, Any], criterion: str, primary: str) -> str:
    return (
        f"**Greedy soup**: the {_n(soup)} fine-tuned ingredients are sorted by held-out {criterion}, best first; each is "
        f"added to the running uniform average only if that does not lower the soup's held-out {criterion}."
    )


def _learned_sentence(soup: dict[str, Any], criterion: str, primary: str) -> str:
    granularity = (soup.get("learned") or {}).get("granularity", "model")
    return (
        f"**Learned soup**: the {_n(soup)} ingredients are mixed with one coefficient per {granularity}, optimised on "
        "the held-out split (softmax-normalised), then the weights are averaged with those coefficients."
    )


def _model_stock_sentence(soup: dict[str, Any], criterion: str, primary: str) -> str:
    block = soup.get("model_stock") or {}
    kind = (block.get("anchor") or {}).get("kind", "their common start")
    t_mean = (block.get("summary") or {}).get("t_mean")
    ratio = f" (mean t {t_mean:.2f})" if isinstance(t_mean, (int, float)) else ""
    return (
        f"**Model stock** (Jang et al., ECCV 2024): for every weight tensor, the mean of the {_n(soup)} ingredients is "
        f"pulled back towards the point they were all fine-tuned from ({kind}) by a ratio t computed from the "
        f"angle between their updates{ratio}; no held-out data is used."
    )


def _filtered_uniform_sentence(soup: dict[str, Any], criterion: str, primary: str) -> str:
    block = soup.get("filtered_uniform") or {}
    kept = sum(1 for i in soup["ingredients"] if i.get("kept"))
    return (
        f"**Filtered uniform soup** (as in DiWA, Ramé et al. 2022): ingredients that diverged, scored at or below "
        f"chance on held-out, or fell more than {block.get('margin', 'a margin')} below the best held-out "
        f"{primary} were dropped ({kept} of {_n(soup)} kept); the rest are averaged with equal weights."
    )


# ----------------------------------------------------------------------------- the recipes' rows


def _greedy_card_label(row: dict[str, Any], soup: dict[str, Any]) -> str:
    results = soup["results"]
    return (f"greedy soup ({_kept(row)} of {_n(soup)} kept)" if row.get("kept") else "greedy soup") + (
        f" by held-out {soup.get('criterion', 'metric')}"
        if "greedy-loss" in results or "greedy-metric" in results
        else ""
    )


def _model_stock_table_label(row: dict[str, Any], soup: dict[str, Any]) -> str:
    return f"model stock (mean t {row['t_mean']:.2f})" if row.get("t_mean") is not None else "model stock"


UNIFORM_ROW = RowDisplay(
    "uniform",
    20,
    lambda row, soup: f"uniform soup ({_n(soup)})",
    lambda row, soup: f"uniform soup ({_n(soup)} ingredients)",
    {"marker": "s", "color": "tab:orange", "label": "uniform soup"},
)

# fmt: off
CATALOG: dict[str, RecipeInfo] = {info.name: info for info in (
    RecipeInfo(
        "uniform", "uniform", "uniform soup", "uniform-soup", "mean of all ingredients", _uniform_sentence,
        rows=(UNIFORM_ROW,), baseline=True,
    ),
    RecipeInfo(
        "average-last", "uniform", "checkpoint average", "checkpoint-averaging",
        "float64 average of the last N checkpoints of one run", _average_last_sentence,
        alone=True, result_key="uniform",
    ),
    RecipeInfo(
        "greedy", "greedy", "greedy soup", "greedy-soup",
        "Model Soups Recipe 1: add ingredients in held-out order while the held-out score does not drop",
        _greedy_sentence,
        rows=(
            RowDisplay(
                "greedy", 40,
                lambda row, soup: f"greedy soup by {soup['criterion']} ({_kept(row)} kept)",
                _greedy_card_label,
                {"marker": "*", "color": "tab:red", "label": "greedy soup", "s": 160},
            ),
            RowDisplay(
                "greedy-metric", 41,
                lambda row, soup: f"greedy soup by metric ({_kept(row)} kept)",
                lambda row, soup: f"greedy soup by held-out metric ({_kept(row)} of {_n(soup)} kept)",
            ),
            RowDisplay(
                "greedy-loss", 42,
                lambda row, soup: f"greedy soup by loss ({_kept(row)} kept)",
                lambda row, soup: f"greedy soup by held-out loss ({_kept(row)} of {_n(soup)} kept)",
            ),
        ),
        needs_scores=True, needs_heldout=True, baseline=True,
    ),
    RecipeInfo(
        "learned", "learned", "learned soup", "learned-soup",
        "softmax mixing coefficients per model or per tensor, fitted on held-out by gradient descent",
        _learned_sentence,
        rows=(
            RowDisplay(
                "learned", 60,
                lambda row, soup: f"learned soup ({soup['learned']['granularity']}; fitted on held-out)",
                lambda row, soup: f"learned soup ({LEARNED_NOTE})",
                {"marker": "D", "color": "tab:purple", "label": "learned soup"},
            ),
        ),
        needs_scores=True, needs_heldout=True,
    ),
    RecipeInfo(
        "model-stock", "model_stock", "model stock soup", "model-stock-soup",
        "Model Stock: the ingredients' mean pulled towards the sweep's common start by the deltas' angle",
        _model_stock_sentence,
        rows=(
            RowDisplay(
                "model-stock", 50, _model_stock_table_label, lambda row, soup: "model stock soup",
                {"marker": "X", "color": "tab:cyan", "label": "model stock soup"},
            ),
        ),
        needs_anchor=True,
    ),
    RecipeInfo(
        "filtered-uniform", "filtered_uniform", "filtered uniform soup", "filtered-uniform-soup",
        "uniform soup of the ingredients that neither diverged nor fell a margin below the best",
        _filtered_uniform_sentence,
        rows=(
            RowDisplay(
                "filtered-uniform", 30,
                lambda row, soup: f"filtered uniform soup ({_kept(row)} of {_n(soup)} kept)",
                lambda row, soup: f"filtered uniform soup ({_kept(row)} of {_n(soup)} kept)",
                {"marker": "s", "color": "tab:brown", "label": "filtered uniform soup"},
            ),
        ),
        needs_scores=True, needs_heldout=True,
    ),
)}
# fmt: on


# ----------------------------------------------------------------------------- what every soup is compared with


def _majority_table_label(row: dict[str, Any], soup: dict[str, Any]) -> str:
    return f"always '{row['label']}' (majority class)" if "label" in row else "constant (held-out mean)"


def _majority_card_label(row: dict[str, Any], soup: dict[str, Any]) -> str:
    if "label" in row:
        return f"always `{row['label']}`: the majority class of held-out, a model that learned nothing"
    return "a constant (the held-out mean): a model that learned nothing"


# Rows of every scored merge that are not recipes: the best single (chosen on held-out), a model
# that learned nothing, the logit ensemble (k x inference) and the best single on test (reference only).
COMPARISONS: tuple[RowDisplay, ...] = (
    RowDisplay(
        "best_single",
        0,
        lambda row, soup: f"best single ({row['name']})",
        lambda row, soup: f"best single ingredient{_named(row)}, chosen on held-out",
    ),
    RowDisplay("majority", 10, _majority_table_label, _majority_card_label),
    RowDisplay(
        "ensemble",
        90,
        lambda row, soup: f"ensemble ({row['members']} models, {row['inference_cost']}x inference)",
        lambda row, soup: f"logit ensemble ({row.get('members', _n(soup))} models)",
        {"marker": "^", "color": "tab:green", "label": "logit ensemble"},
    ),
    RowDisplay(
        "oracle_best_single",
        100,
        lambda row, soup: f"oracle best single on test ({row['name']})",
        lambda row, soup: f"oracle best single{_named(row)}, chosen **on test**: reference only",
    ),
)


def result_rows() -> list[RowDisplay]:
    """Every `results` row a merge can write, in the order the printed table and the card show them."""
    rows = [*COMPARISONS, *(row for info in CATALOG.values() for row in info.rows)]
    return sorted(rows, key=lambda row: row.position)


def plot_styles() -> dict[str, Mapping[str, Any]]:
    """{results key: marker style} of the rows soup.png draws: the recipes' in catalog order, then the ensemble."""
    rows = [*(row for info in CATALOG.values() for row in info.rows), *COMPARISONS]
    return {row.key: row.plot_style for row in rows if row.plot_style is not None}
