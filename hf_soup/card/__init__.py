"""The model card (README.md) and plot (soup.png) of a soup folder, generated from its soup.json.

    python -m hf_soup.card soups/rte-greedy                              # (re)write README.md + soup.png
    python -m hf_soup.card soups/rte-greedy --repo_id you/rte-soup --license apache-2.0

Why a generator: a soup's card must say what was averaged, how it compares with the obvious
baselines (best single model, uniform soup, logit ensemble) on held-out *and* test data, and how
to rebuild it. All of that is already in `soup.json` (docs/FORMATS.md), so the card is a pure
function of it: the same soup.json gives byte-identical README.md and soup.png, which is what
makes a re-push of an unchanged soup a no-op on the Hub.

Metadata goes through `huggingface_hub.ModelCardData` / `EvalResult` (so the Hub's parser reads
it back, `model-index` included); the body is the Jinja template `hf_soup/templates/soup_card.md`
(shipped as package data; pass `template=` to use your own, e.g. one kept in `model_cards/`).
The last line of a generated card carries a hash of its content: `is_generated_card` tells an
untouched generated card (safe to regenerate) from one a person edited (never overwritten).

One job per module: `facts` (the task, data and models, from soup.json and the GLUE presets),
`cells` (how one value is written), `text` (sentences), `tables`, `plot`, `build` (the card and its
files) and `cli`. It reads soup.json and the ground modules only (the task presets, the model
families, the recipe catalog, the soup.json reader, and the card sections of the calibration,
extra-test, temperature, geometry and inference-cost modules); never the merge or the publisher,
so both can call it.
"""

from __future__ import annotations

from hf_soup.card.build import (
    DEFAULT_TEMPLATE,
    MARKER_PREFIX,
    build_card,
    card_metadata,
    is_generated_card,
    write_card,
)
from hf_soup.card.cells import METRIC_NAMES, gain_cell
from hf_soup.card.cli import CardArguments, main
from hf_soup.card.facts import (
    GENERIC_MODEL_FOLDERS,
    GLUE_DATASET,
    TASK_CARDS,
    TaskCard,
    dataset_of,
    distinct_kept,
    hub_base_model,
    is_glue,
    local_base_license,
    local_model_label,
    recorded_task,
    task_card,
    task_card_of,
    test_sources,
    test_split_names,
    test_split_text,
)
from hf_soup.card.plot import render_plot
from hf_soup.card.tables import identical_text, ingredients_table, learned_text, results_table, trace_table
from hf_soup.card.text import (
    commands_text,
    data_texts,
    example_texts,
    gain_text,
    gain_verdict,
    learned_nothing_text,
    made_of_text,
    recipe_sentences,
    usage_snippet,
)

__all__ = [
    "DEFAULT_TEMPLATE",
    "GENERIC_MODEL_FOLDERS",
    "GLUE_DATASET",
    "MARKER_PREFIX",
    "METRIC_NAMES",
    "TASK_CARDS",
    "CardArguments",
    "TaskCard",
    "build_card",
    "card_metadata",
    "commands_text",
    "data_texts",
    "dataset_of",
    "distinct_kept",
    "example_texts",
    "gain_cell",
    "gain_text",
    "gain_verdict",
    "hub_base_model",
    "identical_text",
    "ingredients_table",
    "is_generated_card",
    "is_glue",
    "learned_nothing_text",
    "learned_text",
    "local_base_license",
    "local_model_label",
    "made_of_text",
    "main",
    "recipe_sentences",
    "recorded_task",
    "render_plot",
    "results_table",
    "task_card",
    "task_card_of",
    "test_sources",
    "test_split_names",
    "test_split_text",
    "trace_table",
    "usage_snippet",
    "write_card",
]
