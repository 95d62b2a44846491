"""The card's sentences: the data, the usage snippet, the recipe, the gain over the best single, the commands.

Each is a pure function of soup.json (and, for the snippet, the model family), filled into the
template's placeholders by `hf_soup.card.build`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hf_soup.card.cells import _metric_name, gain_cell
from hf_soup.card.facts import TaskCard, _is_carved, dataset_of, distinct_kept, is_glue
from hf_soup.families import ENCODER, TEXT, family_row, t5_prompt
from hf_soup.recipes.catalog import CATALOG
from hf_soup.redact import redact_text, strip_local_paths
from hf_soup.soup_file import GAIN_KEY


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

    The family's row decides it (`hf_soup.families.FAMILY_TABLE`): its loader class; its input, one
    text or a pair (`text`/`text_pair`) or T5's GLUE prompt string; and whether it answers in the
    text-classification pipeline or generates a label word (text-to-text).
    """
    row = family_row(family)
    ref = json.dumps(model_ref)
    fields = text_fields or [f"sentence{i + 1}" for i in range(len(task.example))]
    texts = example_texts(task, fields)
    if row.input_format == TEXT:
        text = json.dumps({"text": texts[0], "text_pair": texts[1]} if len(texts) == 2 else texts[0])
        format_note = []
    else:
        text = json.dumps(t5_prompt(task_name, fields, texts))
        answer = "; it answers with a label word" if row.label_words else ""
        format_note = [f"# the input format it was fine-tuned on: T5's GLUE prompt{answer}"]
    model_class = "  # T5ForSequenceClassification" if row.encoder_decoder and not row.label_words else ""
    lines = [
        f"from transformers import {row.loader}, AutoTokenizer" + ("" if row.label_words else ", pipeline"),
        "",
        f"model = {row.loader}.from_pretrained({ref}){model_class}",
        f"tokenizer = AutoTokenizer.from_pretrained({ref})",
    ]
    if row.label_words:
        words = f"  # one of: {', '.join(label_words)}" if label_words else ""
        return "\n".join(
            [
                *lines,
                *format_note,
                f'inputs = tokenizer({text}, return_tensors="pt")',
                "output = model.generate(inputs.input_ids, attention_mask=inputs.attention_mask, max_new_tokens=8)",
                f"print(tokenizer.decode(output[0], skip_special_tokens=True)){words}",
            ]
        )
    pipe_args = ', function_to_apply="none"' if task.regression else ""
    return "\n".join(
        [
            *lines,
            f'classifier = pipeline("{row.pipeline_tag}", model=model, tokenizer=tokenizer{pipe_args})',
            *format_note,
            f"print(classifier({text}))",
        ]
    )


def recipe_sentences(soup: dict[str, Any]) -> str:
    """The recipe's paragraph (the catalog's sentence; a recipe it does not know reads as a uniform soup)."""
    criterion = _metric_name(soup["primary_metric"]) if soup.get("criterion", "metric") == "metric" else "loss"
    info = CATALOG.get(soup["recipe"], CATALOG["uniform"])
    return info.sentence(soup, criterion, _metric_name(soup["primary_metric"]))


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
