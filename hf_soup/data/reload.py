"""The merge-time reload: the splits a merge scores on, rebuilt from what the ingredients recorded,
and whether its held-out rows are provably not training rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_soup.data.arguments import LOCATION_FIELDS, DataArguments, arguments_from_description
from hf_soup.data.splits import TaskSplits, load_splits
from hf_soup.errors import SoupError
from hf_soup.tasks import PRESETS, Task, get_task

if TYPE_CHECKING:  # imported where used: `python -m hf_soup.merge --skip_scoring` never loads datasets
    from datasets import Dataset


@dataclass
class HeldoutCheck:
    """Can we show that the held-out rows a merge chooses on were not training rows of its ingredients?"""

    disjoint: bool
    reason: str


# Flags a merge may give beside a recorded data description (everything else comes from the record).
MERGE_OVERRIDES = (*LOCATION_FIELDS, "heldout_split", "max_test_samples", "max_seq_length", "task")


def _given(flags: DataArguments) -> dict[str, Any]:
    """The DataArguments fields set to something else than their default (what the user typed).

    None is never typed: it is a subclass's "not given" default (the merge's `max_seq_length`), and
    taking it as given would overwrite what the ingredients recorded."""
    defaults = DataArguments()
    return {
        f.name: getattr(flags, f.name)
        for f in fields(DataArguments)
        if getattr(flags, f.name) is not None and getattr(flags, f.name) != getattr(defaults, f.name)
    }


def _text_keys(dataset: Dataset, task: Task) -> set[int]:
    keys: set[int] = set()
    for batch in dataset.select_columns(list(task.text_fields)).iter(batch_size=20_000):
        keys.update(hash(texts) for texts in zip(*(batch[name] for name in task.text_fields)))
    return keys


def overlap_with_train(splits: TaskSplits) -> int:
    """Held-out rows whose text(s) also occur in the source's train split (exact match)."""
    train = _text_keys(splits.full_train if splits.full_train is not None else splits["train"], splits.task)
    heldout = splits["heldout"].select_columns(list(splits.task.text_fields))
    return sum(hash(texts) in train for texts in zip(*(heldout[name] for name in splits.task.text_fields)))


def load_recorded(record: dict[str, Any] | None, flags: DataArguments, where: str) -> tuple[TaskSplits, HeldoutCheck]:
    """The splits a merge scores on: rebuilt from an ingredient's record, or from flags for plain folders.

    * a `data` block (this version's sweep, or `IngredientExportCallback(splits=...)`): everything
      comes from it; the flags may only repoint files (`LOCATION_FIELDS`; sha256 must match), choose
      an explicit held-out (`--heldout_file`, `--heldout_split`), subsample test or set the length;
    * a format-1 record (task name + `split.source` "local:…" / "hub:…"): the preset, its source and
      held-out carve, checked against the recorded fingerprint;
    * no record (plain model folders): the flags describe the data.
    `HeldoutCheck` says whether the held-out rows are provably not training rows (module docstring).
    """
    record = record or {}
    given = _given(flags)
    data = record.get("data")
    split = record.get("split") or {}
    recorded_fingerprint = split.get("fingerprint") or (data or {}).get("heldout", {}).get("fingerprint")
    explicit_heldout = bool(flags.heldout_file or flags.heldout_split)
    if isinstance(data, dict):
        refused = sorted(set(given) - set(MERGE_OVERRIDES))
        if refused:
            raise SoupError(
                f"--{refused[0]}: the ingredients record their data ({where}); a merge may only point at moved "
                "files (--train_file, --dataset_name, ...) or choose another held-out (--heldout_file, --heldout_split)"
            )
        task = Task.from_dict(data.get("task") or {}, f"{where}: data.task")
        if flags.task and get_task(flags.task).name != task.name:
            raise SoupError(f"--task {flags.task}: the ingredients were fine-tuned on {task.name!r}")
        args = arguments_from_description(data, where)
        for name in MERGE_OVERRIDES:
            if name in given and name != "task":
                setattr(args, name, given[name])
        if flags.heldout_file or flags.heldout_split:  # one explicit held-out replaces the recorded one
            args.heldout_file, args.heldout_split = flags.heldout_file, flags.heldout_split
        _check_recorded_paths(args, data.get("source") or {})
        splits = load_splits(args, task=task, expected_origin=data.get("source"))
    elif record.get("task") in PRESETS:
        args = DataArguments(**{**asdict(DataArguments()), **given})
        args.task = record["task"]
        if flags.task and get_task(flags.task).name != get_task(record["task"]).name:
            raise SoupError(f"--task {flags.task}: the ingredients were fine-tuned on {record['task']!r}")
        source = str(split.get("source") or "")
        data_flags = flags.task or flags.glue_dir or flags.dataset_name or flags.train_file
        # A callback ingredient without splits=: its rows may be any copy of the task, so the Hub's is
        # not assumed; the user says which (an explicit --task means the Hub's, and the output says so).
        if not source and not data_flags:
            raise SoupError(
                f"{where}: records the GLUE task {record['task']!r} but not its data (IngredientExportCallback "
                "without splits=); pass what the models were fine-tuned on: --glue_dir DIR (GLUE's TSV folders) "
                f"or --train_file FILE, or --task {record['task']} to score on nyu-mll/glue from the Hub "
                "(or --skip_scoring)"
            )
        if not args.glue_dir and not args.dataset_name and not args.train_file and source.startswith("local:"):
            args.glue_dir = source.removeprefix("local:")
        if args.dataset_revision is None and source.startswith("hub:") and "@" in source:
            args.dataset_revision = source.split("@", 1)[1]
        for name in ("heldout_seed", "heldout_size"):
            if split.get(name) is not None and name not in given:
                setattr(args, name, split[name])
        if "max_test_samples" not in given and split.get("max_test_samples") is not None:
            args.max_test_samples = split["max_test_samples"]
        splits = load_splits(args)
        if not source:
            splits.notes.append(
                f"the ingredients do not record their data: scored on {splits.source}, as the data flags say; "
                "if they were fine-tuned on other rows, every score below is on the wrong data"
            )
    else:
        if not (flags.task or flags.dataset_name or flags.train_file):
            missing = "no ingredient.json" if not record else "ingredient.json records no data description"
            raise SoupError(
                f"{where}: {missing}, so the data is unknown; pass what the models were fine-tuned on "
                "(--task PRESET [--glue_dir], --dataset_name ID or --train_file FILE) to score them, or --skip_scoring"
            )
        args = DataArguments(**{**asdict(DataArguments()), **given})
        splits = load_splits(args)
        recorded_fingerprint = None
    check = recorded_fingerprint and not explicit_heldout and recorded_fingerprint != splits.fingerprint
    if check and recorded_fingerprint != splits.legacy_fingerprint():  # format-1 records: the old formula
        raise SoupError(
            f"{where}: held-out fingerprint {recorded_fingerprint} does not match the held-out split rebuilt from "
            f"{splits.source} ({splits.fingerprint}); pass the data the sweep used"
        )
    return splits, heldout_check(splits, record, recorded_fingerprint, explicit_heldout)


_FILE_FLAGS = {"train": "train_file", "validation": "validation_file", "test": "test_file", "heldout": "heldout_file"}


def _check_recorded_paths(args: DataArguments, source: dict[str, Any]) -> None:
    """A recorded file or folder that is gone: say which flag points at its new place (sha256 must match)."""
    for split, recorded in (source.get("files") or {}).items() if source.get("kind") == "files" else ():
        flag = _FILE_FLAGS[split]
        path = getattr(args, flag)
        if path and not Path(path).exists():
            raise SoupError(
                f"{path}: not found; the ingredients were trained on this {split} file: if it moved, pass --{flag} "
                f"NEW_PATH (its sha256 must be {str(recorded.get('sha256'))[:12]}…)"
            )
    if source.get("kind") == "folder" and args.dataset_name and not Path(args.dataset_name).exists():
        raise SoupError(
            f"{args.dataset_name}: not found; the ingredients were trained on this dataset folder: if it moved, "
            "pass --dataset_name NEW_PATH"
        )
    if source.get("kind") == "glue_dir" and args.glue_dir and not Path(args.glue_dir).is_dir():
        raise SoupError(
            f"{args.glue_dir}: not found; the ingredients were trained on this GLUE folder: if it moved, "
            "pass --glue_dir NEW_PATH"
        )


def heldout_check(splits: TaskSplits, record: dict[str, Any], fingerprint: str | None, explicit: bool) -> HeldoutCheck:
    """Whether the merge can show its held-out rows were not training rows of the ingredients (issue: a
    plain folder may have trained on anything, so carving 10 % of train for it proves nothing)."""
    size = len(splits["heldout"])
    if not record:
        how = (
            f"given by --heldout_{'file' if splits.heldout.get('from') == 'file' else 'split'}"
            if explicit
            else ("carved from the train split")
        )
        return HeldoutCheck(
            False,
            f"the ingredients are plain model folders (no ingredient.json), so what they were trained on is unknown; "
            f"the {size} held-out rows ({how}) may be training data"
            + ("" if explicit else ": pass --heldout_file or --heldout_split with rows they did not see"),
        )
    if not fingerprint:
        return HeldoutCheck(
            False,
            f"ingredient.json records no held-out split (IngredientExportCallback without splits=), so the {size} "
            "held-out rows may be training data",
        )
    carved = splits.heldout.get("from") == "train"
    if carved and not explicit:
        return HeldoutCheck(
            True, f"the {size} held-out rows the ingredients recorded (fingerprint {fingerprint}), carved from train "
            "before fine-tuning",
        )  # fmt: skip
    overlap = overlap_with_train(splits)
    if overlap:
        return HeldoutCheck(False, f"{overlap} of the {size} held-out rows also appear in the training split")
    return HeldoutCheck(
        True, f"the {size} held-out rows ({splits.heldout.get('where')}) are a split of their own; none of them "
        "appears in the training split",
    )  # fmt: skip
