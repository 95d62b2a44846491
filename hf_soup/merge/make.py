"""Making the soup: score the ingredients, run the baselines and the recipe, write the recipe's weights.

    made = make_soup(args, data, checkpoints, folder, anchor, skip)   # a MadeSoup: rows, outcome, soup.json extras

One soup at a time: each recipe's weights are dropped (and memory returned) before the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hf_soup.calibration import add_calibration
from hf_soup.checkpoints import Checkpoint
from hf_soup.extra_tests import GAINS_KEY as EXTRA_GAINS_KEY
from hf_soup.extra_tests import RECORD_KEY as EXTRA_TESTS_KEY
from hf_soup.extra_tests import add_extra_gains, prediction_arrays
from hf_soup.geometry import add_to_merge as add_geometry
from hf_soup.inference_cost import KEY as COST_KEY
from hf_soup.merge.arguments import MergeArguments, MergeDataArguments
from hf_soup.merge.rows import ResultRow, add_gains, baseline_rows
from hf_soup.merge.scorer import prepare_scorer
from hf_soup.model_writer import files_sha256, save_state
from hf_soup.recipes.context import (
    CRITERIA,
    IngredientScores,
    RecipeContext,
    RecipeOutcome,
    metrics_of,
    selection_score,
)
from hf_soup.recipes.registry import RECIPE_RUNS, recipes_to_run
from hf_soup.soup_file import GAIN_KEY, WEIGHTS_SHA256_KEY
from hf_soup.stored_logits import KEY as STORED_LOGITS_KEY
from hf_soup.stored_logits import inference_cost as stored_inference_cost
from hf_soup.stored_logits import score_ingredients as score_reusing_logits
from hf_soup.temperature import KEY as TEMPERATURE_KEY
from hf_soup.temperature import calibrate as fold_temperature

SOUP_ROW_FLAGS = ("fitted_on_heldout",)


def release_memory() -> None:
    """Hand freed memory back to the OS before the next model-sized allocation.

    A soup's tensors are freed when the next recipe starts, but glibc keeps freed chunks below its
    (adaptive, up to 32 MB) mmap threshold in the heap, where the next recipe's tensors do not
    always fit: without this, a scored merge held about four models instead of two.
    `malloc_trim(0)` returns every free page; elsewhere than glibc it is skipped.
    """
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl without malloc_trim)
        ctypes.CDLL(None).malloc_trim(0)


@dataclass
class MadeSoup:
    """What `make_soup` did: the requested recipe's outcome, every result row, and what soup.json adds."""

    task: str | None
    primary_metric: str | None
    split: dict[str, Any] | None  # the scored splits' description (None when not scored)
    text_fields: list[str] | None  # the task's text columns (one text or a pair; the card's snippet feeds them)
    outcome: RecipeOutcome  # the requested recipe's (its state already written and dropped)
    ingredients: IngredientScores | None  # None when not scored
    rows: list[ResultRow] = field(default_factory=list)  # baselines, then every recipe run, in order
    extra: dict[str, Any] = field(default_factory=dict)  # top-level soup.json keys the recipes added
    result_key: str = "soup"  # the requested recipe's row

    @property
    def results(self) -> dict[str, Any]:
        """soup.json `results`: every row, plus `soup` = the requested recipe's scores."""
        if self.outcome.scores is None:
            return {}
        results = {row.key: row.to_json() for row in self.rows}
        flags = {key: value for key, value in self.outcome.row.items() if key in SOUP_ROW_FLAGS}
        results["soup"] = {**metrics_of(self.outcome.scores), **flags}
        written = next((row for row in self.rows if row.key == self.result_key), None)
        for key in (GAIN_KEY, EXTRA_GAINS_KEY):  # gains on test and on every extra set: the argmax is the row's
            if written is not None and key in written.fields:
                results["soup"][key] = written.fields[key]
        return results


def make_soup(
    args: MergeArguments,
    data: MergeDataArguments,
    checkpoints: list[Checkpoint],
    folder: Path,
    anchor: Any = None,
    skip: tuple[str, ...] = (),
) -> MadeSoup:
    """Score the ingredients, run the baselines and the recipe, write the recipe's weights into `folder`.

    Each recipe's state is dropped as soon as it is scored (and written, for the requested one), so
    at most one soup exists at a time beside the scoring model.
    """
    context = RecipeContext(args, checkpoints, anchor=anchor)
    rows: list[ResultRow] = []
    if args.skip_scoring:
        record = next((c.ingredient for c in checkpoints if c.ingredient), None) or {}
        task_name, primary_metric, split, text_fields = record.get("task"), None, None, None
    else:
        task, split, context.scorer = prepare_scorer(args, data, checkpoints)
        context.task, task_name, primary_metric, text_fields = (
            task,
            task.name,
            task.primary_metric,
            list(task.text_fields),
        )
        context.splits = ("heldout", *task.test_split_names)  # every test split (MNLI: mismatched too)
        context.splits += tuple(f"extra:{name}" for name in (split or {}).get(EXTRA_TESTS_KEY, {}))
        context.ingredients, reuse = score_reusing_logits(
            context.scorer, checkpoints, args.criterion, context.splits, split["max_length"], reuse=args.reuse_logits
        )
        rows = baseline_rows(task, checkpoints, context.ingredients, context.scorer)
        context.remember_ingredients()
    release_memory()  # what building the scorer and scoring left behind
    chosen: RecipeOutcome | None = None
    extra: dict[str, Any] = {} if args.skip_scoring else {STORED_LOGITS_KEY: reuse.to_json()}
    add_geometry(context, args, extra)  # streamed, before any soup exists: the memory bound holds
    release_memory()
    for name in recipes_to_run(args.recipe, scored=not args.skip_scoring, compare_all=args.compare == "all"):
        if name in skip:
            continue
        outcome = RECIPE_RUNS[name].run(context)
        if name == args.recipe:
            state = outcome.state
            if args.calibrate:  # T fitted on held-out, folded into the head's last layer of what is written
                references = {split: context.scorer.references(split) for split in context.splits}
                ensemble = next((row.scores for row in rows if row.key == "ensemble"), None)
                state, extra[TEMPERATURE_KEY] = fold_temperature(
                    state, outcome.scores, context.scorer.model, references, ensemble
                )
            extra[WEIGHTS_SHA256_KEY] = files_sha256(save_state(state, folder, args.max_shard_size))
            chosen = outcome
        outcome.state = None  # one soup at a time: the next recipe's memory is this one's
        release_memory()
        if outcome.scores is not None:
            rows.append(ResultRow(RECIPE_RUNS[name].result_key, outcome.scores, fields=outcome.row))
        extra.update(outcome.extra)
    if args.compare == "all" and not args.skip_scoring and not RECIPE_RUNS[args.recipe].alone:
        rows.append(_greedy_by_other_criterion(context))
    if context.task is not None:
        add_gains(context.task, rows, context.scorer.references("test"))
        extra_references = {s: context.scorer.references(s) for s in context.splits if s.startswith("extra:")}
        add_extra_gains(context.task, rows, extra_references)
        reported = {s: context.scorer.references(s) for s in context.splits if s != "heldout"}
        add_calibration(context.task, rows, context.ingredients, reported)  # classification only
        cost = stored_inference_cost(context, reuse, args.inference_timing_rows)  # real passes, timed
        if cost is not None:
            extra[COST_KEY] = cost
        if args.predictions_file:
            more = prediction_arrays(rows, extra_references)
            save_predictions(Path(args.predictions_file), rows, context.scorer.references("test"), more)
    if split and EXTRA_TESTS_KEY in split:
        extra[EXTRA_TESTS_KEY] = split.pop(EXTRA_TESTS_KEY)
    made = MadeSoup(task_name, primary_metric, split, text_fields, chosen, context.ingredients, rows, extra)
    made.result_key = RECIPE_RUNS[args.recipe].result_key
    return made


def _greedy_by_other_criterion(context: RecipeContext) -> ResultRow:
    """The greedy soup selected on the criterion the merge was not asked for (row `greedy-<criterion>`)."""
    other = next(criterion for criterion in CRITERIA if criterion != context.args.criterion)
    scored = context.ingredients.scored
    selection = [selection_score(s["heldout"].metrics, other) for s in scored]
    alternative = replace(
        context, args=replace(context.args, criterion=other), ingredients=IngredientScores(scored, selection)
    )
    outcome = RECIPE_RUNS["greedy"].run(alternative)
    return ResultRow(f"greedy-{other}", outcome.scores, fields={**outcome.row, "criterion": other})


def save_predictions(path: Path, rows: list[ResultRow], references: Any, more: dict[str, Any] | None = None) -> None:
    """Every row's test logits and the test labels in one .npz (for statistics pooled over merges);
    `more`: further arrays, e.g. the extra test sets' `<row>@<NAME>` and `references@<NAME>`."""
    import os

    import numpy as np

    arrays = {row.key: row.scores["test"].logits for row in rows if "test" in row.scores}
    arrays.update(more or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    with open(tmp, "wb") as handle:
        np.savez_compressed(handle, references=np.asarray(references), **arrays)
    os.replace(tmp, path)
