"""The card itself: metadata through `huggingface_hub.ModelCardData`, the body through the Jinja template,
and the hash on its last line that tells a generated card from one a person edited."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from hf_soup import calibration, extra_tests, geometry, inference_cost, temperature
from hf_soup.atomic import write_text_atomic
from hf_soup.card.cells import _metric_name, _recipe_tag, _recipe_title, _reported_metrics
from hf_soup.card.facts import (
    _is_carved,
    dataset_of,
    hub_base_model,
    is_glue,
    local_base_license,
    local_model_label,
    recorded_task,
    task_card_of,
    test_sources,
    test_split_names,
)
from hf_soup.card.plot import render_plot
from hf_soup.card.tables import ingredients_table, learned_text, results_table, trace_table
from hf_soup.card.text import (
    commands_text,
    data_texts,
    gain_text,
    learned_nothing_text,
    made_of_text,
    recipe_sentences,
    usage_snippet,
)
from hf_soup.errors import SoupError
from hf_soup.families import ENCODER, FAMILY_TABLE, LABEL_WORDS_KEY, family_of
from hf_soup.soup_file import read_soup

DEFAULT_TEMPLATE = Path(__file__).parent.parent / "templates" / "soup_card.md"  # package data of hf_soup


MARKER_PREFIX = "<!-- hf_soup.card sha256:"


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
