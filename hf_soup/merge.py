"""Merge fine-tuned ingredients into one model: uniform, greedy or learned soup, or checkpoint averaging.

    python -m hf_soup.merge --ingredients runs/rte --recipe greedy --output soups/rte-greedy
    python -m hf_soup.merge --ingredients runs/rte other/*-seed* --recipe uniform --output soups/rte-uniform
    python -m hf_soup.merge --ingredients my_models/a my_models/b --task rte --glue_dir ../shared/glue \\
        --recipe greedy --criterion loss --strict --output soups/mine      # plain HF folders: give the data
    python -m hf_soup.merge --ingredients my_models/* --train_file t.csv --heldout_file unseen.csv --output s
    python -m hf_soup.merge --ingredients out/run1 --recipe average-last --last_n 3 --output out/avg \\
        --skip_scoring                                                     # last 3 checkpoint-* of one run
    python -m hf_soup.merge --ingredients runs/rte --recipe learned --learned_granularity layer --output soups/l

What one run does, in order:
  1. find the ingredients (a sweep folder expands to its runs) and refuse unmixable ones, naming
     the first difference (hf_soup.checkpoints);
  2. rebuild the held-out and test splits the sweep used from ingredient.json's data description,
     with no data flags (hf_soup.data.load_recorded: the fingerprint and the data's sha256 / Hub
     commit must match; moved files are repointed by the same flags), say whether held-out is
     provably not training data (soup.json `heldout_disjoint`), and score every ingredient on
     held-out and every test split (hf_soup.scoring; logits kept for the ensemble);
  3. the baselines every soup is compared with: the best single ingredient chosen on held-out, the
     soft-vote ensemble (k× inference cost), the best single on test reported as an oracle only
     (test, e.g. GLUE dev, never chooses) — then the recipe runs of `hf_soup.recipes` (one registry:
     uniform and greedy always, as baselines, then the requested recipe), each scored alike;
  4. write the recipe's soup as a normal HF model folder (config, tokenizer, model.safetensors,
     sharded when large) + soup.json (docs/FORMATS.md), atomically: a temp folder renamed into
     place, under a lock, so a killed or concurrent merge never leaves a half-written soup.
Memory: the scoring model + at most one soup (greedy's float32 running sum, or the requested
recipe's weights while they are written) + one batch's activations, whatever the number of
ingredients: ingredients are memory-mapped and read one tensor at a time, the uniform baseline is
streamed into the scoring model, and freed memory is returned between recipes (`release_memory`).
The learned soup is the exception (about three models: mixed weights, their gradient, the model).
"""

from __future__ import annotations

import glob
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from hf_soup.atomic import atomic_dir, clear_temporaries_of, exclusive_lock, write_json_atomic
from hf_soup.calibration import add_calibration
from hf_soup.calibration import table_lines as calibration_table_lines
from hf_soup.card import learned_nothing_text, test_split_names, test_split_text, write_card
from hf_soup.checkpoints import (
    Checkpoint,
    check_compatible,
    copy_model_files,
    drop_duplicate_runs,
    find_ingredients,
    find_trainer_checkpoints,
    mixed_dropout,
    save_state,
)
from hf_soup.data import DataArguments
from hf_soup.errors import DefaultsHelpFormatter, SoupError, cli_main
from hf_soup.extra_tests import RECORD_KEY as EXTRA_TESTS_KEY
from hf_soup.extra_tests import (
    add_extra_gains,
    load_extra_tests,
    parse_extra_tests,
    prediction_arrays,
    tokenize_extra_tests,
)
from hf_soup.extra_tests import table_lines as extra_table_lines
from hf_soup.families import family_of
from hf_soup.geometry import add_to_merge as add_geometry
from hf_soup.geometry import check_flags as check_geometry_flags
from hf_soup.geometry import table_lines as geometry_table_lines
from hf_soup.inference_cost import KEY as COST_KEY
from hf_soup.inference_cost import sentence as cost_sentence
from hf_soup.inference_cost import with_gain as with_cost_gain
from hf_soup.ingredient import library_versions, utc_now
from hf_soup.recipes import (
    CRITERIA,
    DEFAULT_FILTER_MARGIN,
    GAIN_KEY,
    RECIPE_RUNS,
    IngredientScores,
    RecipeContext,
    RecipeOutcome,
    ResultRow,
    add_gains,
    baseline_rows,
    metrics_of,
    recipes_to_run,
    selection_score,
)
from hf_soup.redact import mask_secret_flags
from hf_soup.stored_logits import KEY as STORED_LOGITS_KEY
from hf_soup.stored_logits import inference_cost as stored_inference_cost
from hf_soup.stored_logits import score_ingredients as score_reusing_logits
from hf_soup.temperature import KEY as TEMPERATURE_KEY
from hf_soup.temperature import calibrate as fold_temperature
from hf_soup.temperature import check_request as check_calibration
from hf_soup.temperature import table_lines as temperature_table_lines

SOUP_FILE = "soup.json"
SOUP_FORMAT = "hf_soup.soup"
SOUP_FORMAT_VERSION = 1
DEFAULT_MAX_SEQ_LENGTH = 128
# Scoring on a CPU: a batch's activations live in the RAM that also holds the scoring model and the
# greedy running sum. BERT-base measured ~385 MB of activations at 64 rows x 128 tokens and ~130 MB
# at 2,048 tokens, at the same speed (a CPU is busy either way); 1,024 keeps them below the largest
# tensor's temporary, so the two models plus imports stay the peak.
CPU_MAX_BATCH_TOKENS = 1024
# The recipe a merge writes unless told otherwise: the one whose gain over the best single the
# replicated benchmark supports (BENCHMARKS.md, "Soup quality"; benchmarks/soup_quality.py).
DEFAULT_RECIPE = "greedy"
# Keys of the requested recipe's results row that `results.soup` repeats (they qualify its scores).
SOUP_ROW_FLAGS = ("fitted_on_heldout",)


@dataclass
class MergeArguments:
    ingredients: list[str] = field(
        metadata={
            "help": "model folders, sweep output folders (expanded to their runs) or globs; "
            "average-last: one Trainer output folder with checkpoint-* inside"
        }
    )
    output: str = field(metadata={"help": "the soup folder to write (refused if it exists, unless --overwrite)"})
    recipe: str = field(
        default=DEFAULT_RECIPE,
        metadata={"help": f"one of {', '.join(RECIPE_RUNS)} (default chosen from BENCHMARKS.md, 'Soup quality')"},
    )
    criterion: str = field(default="metric", metadata={"help": "held-out selection: 'metric' (primary) or 'loss'"})
    strict: bool = field(default=False, metadata={"help": "greedy: keep a candidate only if the score increases"})
    last_n: int = field(default=5, metadata={"help": "average-last: how many of the newest checkpoints"})
    allow_pickle: bool = field(
        default=False, metadata={"help": "accept pickled .bin weights (loaded with torch.load(weights_only=True))"}
    )
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output folder"})
    skip_scoring: bool = field(default=False, metadata={"help": "uniform/average-last: write weights, score nothing"})
    batch_size: int = field(default=64, metadata={"help": "scoring batch size"})
    max_batch_tokens: int | None = field(
        default=None,
        metadata={
            "help": f"scoring: at most this many padded tokens per batch (default: {CPU_MAX_BATCH_TOKENS} on a CPU, "
            "where activations share RAM with the two models a merge holds; no limit on a GPU)"
        },
    )
    device: str | None = field(default=None, metadata={"help": "scoring device (default: cuda when available)"})
    learned_granularity: str = field(default="model", metadata={"help": "learned: 'model' or 'layer' coefficients"})
    learned_epochs: int = field(default=5, metadata={"help": "learned: passes over the held-out split"})
    learned_lr: float = field(default=0.05, metadata={"help": "learned: Adam learning rate on the coefficients"})
    anchor: str | None = field(
        default=None,
        metadata={
            "help": "model-stock: the model every ingredient was fine-tuned from (default: from ingredient.json)"
        },
    )
    filter_margin: float = field(
        default=DEFAULT_FILTER_MARGIN,
        metadata={"help": "filtered-uniform: drop ingredients more than this below the best held-out primary score"},
    )
    compare: str = field(
        default="baselines",
        metadata={
            "help": "what else to score beside the recipe: 'baselines' (uniform, greedy) or 'all' "
            "(every recipe, greedy by both criteria; one scoring pass)"
        },
    )
    predictions_file: str | None = field(
        default=None,
        metadata={"help": "also save every row's test (and extra test sets') logits and the labels here (.npz)"},
    )
    calibrate: str | None = field(
        default=None,
        metadata={
            "help": "'temperature': fit one T on held-out (NLL) and fold it into the classification head's last "
            "layer, so the written soup's probabilities are calibrated through plain from_pretrained"
        },
    )
    extra_test_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "NAME=PATH (csv, tsv, json, jsonl, parquet) or NAME=org/dataset[:split]: more test sets, "
            "e.g. out of distribution, read with the task's columns and labels; scored, never used to choose"
        },
    )
    geometry: bool = field(
        default=True,
        metadata={
            "help": "record the cosine between every pair of ingredients' updates from their shared start "
            "(soup.json `geometry`; needs a known start, as model-stock does; not with --skip_scoring)"
        },
    )
    pairwise_soups: int = field(
        default=0,
        metadata={
            "help": "also score this many two-ingredient uniform soups on held-out (sampled from the N(N-1)/2 "
            "pairs with --pairwise_seed) and plot each one's gain over its pair against their angle; 0: off"
        },
    )
    pairwise_seed: int = field(default=0, metadata={"help": "--pairwise_soups: the seed that samples the pairs"})
    reuse_logits: bool = field(
        default=True,
        metadata={
            "help": "take an ingredient's held-out and test logits from its logits.safetensors (what the sweep "
            "stored) when its weights' sha256, the tokenised rows and the max length match; --no_reuse_logits: "
            "score every ingredient again"
        },
    )
    inference_timing_rows: int = field(
        default=64,
        metadata={
            "help": "when stored logits were reused, time the ensemble's and the soup's real forward passes on "
            "this many test rows (soup.json inference_speed); 0: do not measure"
        },
    )
    max_shard_size: str = field(default="5GB", metadata={"help": "shard the soup's weights above this size"})
    name: str | None = field(default=None, metadata={"help": "soup name in soup.json (default: output folder name)"})
    license: str | None = field(
        default=None, metadata={"help": "license for the model card (default: the base model's)"}
    )
    base_model_id: str | None = field(
        default=None, metadata={"help": "the base model's Hub id for the card, when the sweep used a local path"}
    )
    push_to_hub: str | None = field(
        default=None, metadata={"help": "namespace/name: publish the soup there afterwards (python -m hf_soup.publish)"}
    )
    private: bool = field(default=False, metadata={"help": "with --push_to_hub: create the repo private"})


@dataclass
class MergeDataArguments(DataArguments):
    """DataArguments for plain model folders; with ingredient.json the data comes from its record and
    these flags may only point at moved files or choose another held-out (hf_soup.data.load_recorded)."""

    task: str | None = field(
        default=None, metadata={"help": "GLUE preset (default: the data the ingredients recorded)"}
    )
    max_seq_length: int | None = field(
        default=None, metadata={"help": "default: the ingredients' max_seq_length hyperparameter, else 128"}
    )


def parse_args(argv: list[str] | None) -> tuple[MergeArguments, MergeDataArguments]:
    from transformers import HfArgumentParser

    parser = HfArgumentParser((MergeArguments, MergeDataArguments), formatter_class=DefaultsHelpFormatter)

    def one_line_error(message: str) -> None:
        raise SoupError(message)

    parser.error = one_line_error  # argparse's usage dump -> our one line + exit 2
    args, data, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        raise SoupError(f"unrecognized arguments: {' '.join(unknown)}")
    if args.recipe not in RECIPE_RUNS:
        raise SoupError(f"--recipe {args.recipe!r}: must be one of {', '.join(RECIPE_RUNS)}")
    if args.criterion not in CRITERIA:
        raise SoupError(f"--criterion {args.criterion!r}: must be 'metric' or 'loss'")
    if args.learned_granularity not in ("model", "layer"):
        raise SoupError(f"--learned_granularity {args.learned_granularity!r}: must be 'model' or 'layer'")
    if args.last_n < 1 or args.batch_size < 1 or args.learned_epochs < 0 or (args.max_batch_tokens or 1) < 1:
        raise SoupError("--last_n, --batch_size, --max_batch_tokens must be positive and --learned_epochs non-negative")
    if args.compare not in ("baselines", "all"):
        raise SoupError(f"--compare {args.compare!r}: must be 'baselines' or 'all'")
    if args.filter_margin < 0:
        raise SoupError(f"--filter_margin {args.filter_margin}: must be non-negative")
    if args.skip_scoring and RECIPE_RUNS[args.recipe].needs_scores:
        raise SoupError(f"--skip_scoring: the {args.recipe} recipe chooses on held-out scores, it needs scoring")
    if args.skip_scoring and args.extra_test_files:
        raise SoupError("--extra_test_files: nothing is scored with --skip_scoring")
    parse_extra_tests(args.extra_test_files)  # syntax, names, files: refused before any work
    check_geometry_flags(args)
    if args.calibrate is not None:
        check_calibration(args.calibrate, {"id2label": {0: 0, 1: 1}}, args.skip_scoring)  # the method and flags
    return args, data


# ----------------------------------------------------------------------------- ingredients and data


def open_ingredients(args: MergeArguments) -> tuple[list[Checkpoint], list[dict[str, str]]]:
    """(the ingredients, checked mixable; soup.json rows of the duplicates dropped from them)."""
    hub: dict[str, Any] = {}  # Hub ids among the arguments -> hf_soup.hub_ingredients.HubIngredient
    if args.recipe == "average-last":
        if len(args.ingredients) != 1:
            raise SoupError("--recipe average-last: give exactly one Trainer output folder as --ingredients")
        found = find_trainer_checkpoints(args.ingredients[0])
        if len(found) < args.last_n:
            raise SoupError(
                f"{args.ingredients[0]}: {len(found)} checkpoint-* folders, fewer than --last_n {args.last_n}"
            )
        paths = found[-args.last_n :]
        _refuse_nested_output(Path(args.output), paths)  # beside them in the run folder is fine
    else:
        from hf_soup.hub_ingredients import resolve_ingredients

        hub = resolve_ingredients(args.ingredients, allow_pickle=args.allow_pickle)  # Hub ids: downloaded now
        paths = find_ingredients(args.ingredients, resolved={a: h.folder for a, h in hub.items()})
        local = [Path(a) for a in args.ingredients if a not in hub and not glob.has_magic(a)]
        _refuse_nested_output(Path(args.output), local + paths)
    hub_of = {h.folder: h for h in hub.values()}
    checkpoints = [Checkpoint(path, allow_pickle=args.allow_pickle, hub=hub_of.get(path)) for path in paths]
    checkpoints, duplicates = drop_duplicate_runs(checkpoints)
    for dropped, kept in duplicates:
        print(
            f"warning: {dropped.path}: dropped, the same grid point as {kept.path} (same sweep_id, hyperparameters "
            "and seed: trained twice, e.g. under an old run id)",
            file=sys.stderr,
        )
    check_compatible(checkpoints)
    return checkpoints, [{"path": str(dropped.path), "duplicate_of": str(kept.path)} for dropped, kept in duplicates]


def _refuse_nested_output(output: Path, inputs: list[Path]) -> None:
    """The output must be neither inside an input (a later merge of that sweep folder would take the
    soup for an ingredient) nor above one (--overwrite would delete the ingredients)."""
    target = output.resolve()
    for path in inputs:
        source = path.resolve()
        if target == source or target.is_relative_to(source):
            raise SoupError(f"--output {output}: inside the ingredient folder {path}; write the soup elsewhere")
        if source.is_relative_to(target):
            raise SoupError(f"--output {output}: holds the ingredient folder {path}; write the soup elsewhere")


def prepare_scorer(args: MergeArguments, data: MergeDataArguments, checkpoints: list[Checkpoint]):
    """(task, split description, Scorer) for the held-out and test splits the ingredients were scored on.

    The data comes from the first ingredient.json (`hf_soup.data.load_recorded`: its data
    description, or a format-1 task name + split source), or from the flags for plain folders. The
    model family (encoder, T5 classification, T5 text-to-text) is read from the first ingredient's
    config: `hf_soup.models.scoring_hooks` picks the model class, the logits function and the
    input encoding it was trained with.
    """
    from transformers import AutoConfig, AutoTokenizer

    from hf_soup.data import load_recorded
    from hf_soup.models import check_task_labels, scoring_hooks
    from hf_soup.scoring import build_scorer, tokenize_for_scoring

    first = next((c for c in checkpoints if c.ingredient), None)
    record = first.ingredient if first else None
    where = f"{(first or checkpoints[0]).path}/ingredient.json" if first else str(checkpoints[0].path)
    splits, heldout = load_recorded(record, data, where)
    heldout = every_ingredient_disjoint(heldout, checkpoints, len(splits["heldout"]))
    for note in splits.notes:
        print(f"note: {note}", flush=True)
    config = AutoConfig.from_pretrained(checkpoints[0].path)
    check_task_labels(config, splits.task, fine_tuned=True)  # plain folders: the inferred labels must be the model's
    # Extra test sets: read and checked before any tokenising; scored like test splits, never chosen on.
    extras, extra_tests = load_extra_tests(parse_extra_tests(args.extra_test_files), splits.task, splits.arguments)
    recorded_length = ((record or {}).get("hyperparameters") or {}).get("max_seq_length")
    max_length = (
        data.max_seq_length or recorded_length or splits.arguments.get("max_seq_length") or DEFAULT_MAX_SEQ_LENGTH
    )
    tokenizer_source = next((c for c in checkpoints if c.tokenizer_files()), None)
    if tokenizer_source is None:
        raise SoupError(f"{checkpoints[0].path}: no tokenizer files in any ingredient; cannot score")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source.path)
    hooks = scoring_hooks(config, splits.task, tokenizer, max_length)
    encoder = hooks.pop("encoder", None)
    tokenized = tokenize_for_scoring(
        splits, tokenizer, max_length, encoder=encoder, encoder_name=hooks.pop("encoder_name", "classification")
    )
    if extras:
        tokenized = {**tokenized, **tokenize_extra_tests(extras, splits.task, tokenizer, max_length, encoder)}
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    max_tokens = args.max_batch_tokens or (CPU_MAX_BATCH_TOKENS if torch.device(device).type == "cpu" else None)
    scorer = build_scorer(
        str(checkpoints[0].path),
        splits.task,
        tokenized,
        pad_token_id=tokenizer.pad_token_id or 0,
        batch_size=args.batch_size,
        max_batch_tokens=max_tokens,
        device=device,
        **hooks,
    )
    described = {
        **splits.describe(),
        "data": splits.description(),
        "heldout_disjoint": heldout.disjoint,
        "heldout_disjoint_reason": heldout.reason,
        **({EXTRA_TESTS_KEY: extra_tests} if extra_tests else {}),
        "max_length": max_length,  # not in soup.json's split: keys the stored logits (hf_soup.stored_logits)
    }
    return splits.task, described, scorer


def every_ingredient_disjoint(heldout: Any, checkpoints: list[Checkpoint], size: int) -> Any:
    """The first record's disjointness holds for the soup only if every ingredient records the same
    held-out rows: a plain folder, or a callback ingredient without `splits=`, may have trained on them."""
    if not heldout.disjoint:
        return heldout
    for checkpoint in checkpoints:
        record = checkpoint.ingredient or {}
        split = record.get("split") or {}
        if not (split.get("fingerprint") or ((record.get("data") or {}).get("heldout") or {}).get("fingerprint")):
            what = "is a plain model folder (no ingredient.json)" if not record else "records no held-out split"
            return replace(
                heldout,
                disjoint=False,
                reason=f"{checkpoint.path.name} {what}, so it may have trained on some of the {size} held-out rows",
            )
    return heldout


# ----------------------------------------------------------------------------- the soups


def release_memory() -> None:
    """Hand freed memory back to the OS before the next model-sized allocation.

    A soup's tensors are freed when the next recipe starts, but glibc keeps freed chunks below its
    (adaptive, up to 32 MB) mmap threshold in the heap, where the next recipe's tensors do not
    always fit: without this, a scored merge held about four models instead of two (issue 15,
    item 14). `malloc_trim(0)` returns every free page; elsewhere than glibc it is skipped.
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
        if written is not None and GAIN_KEY in written.fields:
            results["soup"][GAIN_KEY] = written.fields[GAIN_KEY]
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
            save_state(state, folder, args.max_shard_size)
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


# ----------------------------------------------------------------------------- soup.json and the table


def soup_record(
    args: MergeArguments,
    checkpoints: list[Checkpoint],
    made: MadeSoup,
    argv: list[str] | None,
    dropped: list[dict[str, str]] | None = None,
) -> dict:
    """The soup.json payload (docs/FORMATS.md)."""
    record = next((c.ingredient for c in checkpoints if c.ingredient), None) or {}
    weights = made.outcome.weights
    rows = []
    for i, checkpoint in enumerate(checkpoints):
        ingredient = checkpoint.ingredient or {}
        row = {
            "name": checkpoint.name,
            "path": str(checkpoint.path),
            "hyperparameters": ingredient.get("hyperparameters", {}),
            "seed": ingredient.get("seed"),
        }
        if checkpoint.hub is not None:
            row["hub"] = checkpoint.hub.describe()  # the commit the revision resolved to
        if made.ingredients is not None:
            row.update(metrics_of(made.ingredients.scored[i]))
            if made.ingredients.calibration:
                row["calibration"] = made.ingredients.calibration[i]
        row["kept"] = weights[i] > 0
        row["weight"] = weights[i]
        rows.append(row)
    if made.ingredients is not None:
        selection = made.ingredients.selection
        rows = [rows[i] for i in sorted(range(len(rows)), key=lambda i: -selection[i])]
    split = made.split or record.get("split")
    payload = {
        "format": SOUP_FORMAT,
        "format_version": SOUP_FORMAT_VERSION,
        "name": args.name or Path(args.output).name,
        "recipe": args.recipe,
        "task": made.task,
        "primary_metric": made.primary_metric or record.get("primary_metric"),
        "model_family": family_of(checkpoints[0].config),  # decides the loader, the card's snippet, the pipeline
        **({"text_fields": made.text_fields} if made.text_fields else {}),
        "criterion": args.criterion,
        "strict": args.strict,
        "base_model": {
            **(record.get("base_model") or {"name_or_path": None, "revision": None, "weights_sha256": None}),
            **({"hub_id": args.base_model_id} if args.base_model_id else {}),
        },
        "split": {
            key: split.get(key)
            for key in ("source", "fingerprint", "heldout_size", "test_size", "test_sizes", "heldout_from")
        }
        if split
        else None,
        "data": (made.split or {}).get("data") or record.get("data"),
        "heldout_disjoint": (made.split or {}).get("heldout_disjoint"),
        "heldout_disjoint_reason": (made.split or {}).get("heldout_disjoint_reason"),
        "ingredients": rows,
        **({"dropped_duplicates": dropped} if dropped else {}),
        **({"mixed_dropout": mixed} if (mixed := mixed_dropout(checkpoints)) else {}),
        **made.extra,
        "results": made.results,
    }
    with_cost_gain(payload.get(COST_KEY), payload["results"])  # + the ensemble's gain over the soup, in points
    merge_command = "python -m hf_soup.merge " + shlex.join(mask_secret_flags(sys.argv[1:] if argv is None else argv))
    payload["commands"] = {"sweep": record.get("command"), "merge": merge_command}
    payload["versions"] = library_versions()
    payload["created"] = utc_now()
    return payload


def format_table(soup: dict) -> str:
    """The comparison printed after every merge: one row per baseline/soup, held-out and test (and every
    further test split), and each soup's test gain over the best single with its paired-bootstrap 95%
    interval."""
    results = soup["results"]
    if not results:
        return f"{soup['recipe']} soup of {len(soup['ingredients'])} ingredients written (not scored)"
    metric = soup.get("primary_metric") or "primary"
    n = len(soup["ingredients"])
    labels = {
        "best_single": lambda r: f"best single ({r['name']})",
        "majority": lambda r: f"always '{r['label']}' (majority class)" if "label" in r else "constant (held-out mean)",
        "uniform": lambda r: f"uniform soup ({n})",
        "filtered-uniform": lambda r: f"filtered uniform soup ({len(r['kept'])} of {n} kept)",
        "greedy": lambda r: f"greedy soup by {soup['criterion']} ({len(r['kept'])} kept)",
        "greedy-metric": lambda r: f"greedy soup by metric ({len(r['kept'])} kept)",
        "greedy-loss": lambda r: f"greedy soup by loss ({len(r['kept'])} kept)",
        "model-stock": lambda r: (
            f"model stock (mean t {r['t_mean']:.2f})" if r.get("t_mean") is not None else "model stock"
        ),
        "learned": lambda r: f"learned soup ({soup['learned']['granularity']}; fitted on held-out)",
        "ensemble": lambda r: f"ensemble ({r['members']} models, {r['inference_cost']}x inference)",
        "oracle_best_single": lambda r: f"oracle best single on test ({r['name']})",
    }
    more_tests = [s for s in test_split_names(soup) if s != "test"]  # e.g. MNLI's test_mismatched
    more_tests += [f"extra:{name}" for name in soup.get(EXTRA_TESTS_KEY) or {}]  # extra test sets' primary
    lines = [
        f"primary metric: {metric}; chosen on held-out by {soup['criterion']}",
        f"{'':52s} {'heldout':>8s} {'h. loss':>8s} {'test':>8s} {'t. loss':>8s}"
        + "".join(f" {name.removeprefix('test_').removeprefix('extra:')[:8]:>8s}" for name in more_tests)
        + "  test gain vs best single [95% CI]",
    ]

    def cell(row: dict, split: str, key: str) -> str:
        value = row.get(split, {}).get(key)
        return f"{value:8.4f}" if isinstance(value, (int, float)) else f"{'-':>8s}"

    def gain(row: dict) -> str:
        found = row.get(GAIN_KEY)
        if not found:
            return ""
        return f"  {found['estimate']:+.4f} [{found['low']:+.4f}, {found['high']:+.4f}]"

    written = "uniform" if soup["recipe"] == "average-last" else soup["recipe"]
    for key, label in labels.items():
        if key in results:
            row = results[key]
            marker = "  <- written" if key == written else ""
            lines.append(
                f"{label(row)[:52]:52s} {cell(row, 'heldout', 'primary')} {cell(row, 'heldout', 'loss')} "
                f"{cell(row, 'test', 'primary')} {cell(row, 'test', 'loss')}"
                + "".join(f" {cell(row, name, 'primary')}" for name in more_tests)
                + f"{gain(row)}{marker}"
            )
    lines.extend(extra_table_lines(soup))
    lines.extend(calibration_table_lines(soup))
    lines.extend(temperature_table_lines(soup))
    lines.extend(geometry_table_lines(soup))
    if cost_sentence(soup):
        lines.append(f"inference: {cost_sentence(soup)}")
    if soup["recipe"] == "average-last":
        lines.append(f"written: the average of the last {n} checkpoints (row 'uniform')")
    if "learned" in results:
        lines.append("learned: its coefficients were fitted on held-out, so its held-out score is optimistic.")
    lines.append(
        f"test = {test_split_text(soup)}: reported, never used to choose; 'oracle' rows are chosen on test. The "
        "interval is a paired bootstrap over the test rows: it covers the luck of which rows are in test, not of "
        "training."
    )
    if (nothing := learned_nothing_text(soup)) is not None:
        lines.append(f"warning: {nothing}")
    if soup.get("heldout_disjoint") is False:
        lines.append(f"warning: held-out may overlap the ingredients' training data: {soup['heldout_disjoint_reason']}")
    return "\n".join(lines)


def check_anchor(args: MergeArguments, checkpoints: list[Checkpoint]) -> tuple[Any, tuple[str, ...]]:
    """(model stock's anchor, located and checked before any work; recipes to leave out).

    Asked for, a missing anchor is an error; under `--compare all` model stock is only left out, saying why.
    """
    wanted = args.recipe == "model-stock" or (args.compare == "all" and not RECIPE_RUNS[args.recipe].alone)
    if not wanted:
        return None, ()
    from hf_soup.anchors import locate_anchor

    try:
        return locate_anchor(checkpoints, args.anchor), ()
    except SoupError as err:
        if args.recipe == "model-stock":
            raise
        print(f"model-stock not compared: {err}", file=sys.stderr)
        return None, ("model-stock",)


def _refuse_existing(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise SoupError(f"{output}: already exists (refusing to overwrite; pass --overwrite)")


def write_soup_folder(
    args: MergeArguments,
    checkpoints: list[Checkpoint],
    made: MadeSoup,
    folder: Path,
    argv: list[str] | None,
    dropped: list[dict[str, str]] | None = None,
) -> dict:
    """Beside the weights: config and tokenizer files, soup.json, and the card (when scored)."""
    files_from = next((c for c in checkpoints if c.tokenizer_files()), checkpoints[-1])
    copy_model_files(checkpoints[0].path, folder)
    copy_model_files(files_from.path, folder)
    if args.recipe == "average-last" and not files_from.tokenizer_files():
        copy_model_files(Path(args.ingredients[0]), folder)  # the run folder's save_model()
    soup = soup_record(args, checkpoints, made, argv, dropped)
    write_json_atomic(folder / SOUP_FILE, soup)
    if soup["results"]:  # the card reports scores; an unscored average gets none
        write_card(
            folder,
            license=args.license,
            repo_id=args.push_to_hub,
            base_model=args.base_model_id,
            local_path=Path(args.output),
        )
    return soup


def main(argv: list[str] | None = None) -> int:
    args, data = parse_args(argv)
    output = Path(args.output)
    _refuse_existing(output, args.overwrite)  # fail fast, before any work
    checkpoints, dropped = open_ingredients(args)  # read-only: bad input leaves no trace, not even a lock file
    anchor, skip = check_anchor(args, checkpoints)
    check_calibration(args.calibrate, checkpoints[0].config)  # regression, text-to-text: refused before any work
    with exclusive_lock(output, tidy=True):
        _refuse_existing(output, args.overwrite)  # another merge may have finished meanwhile
        clear_temporaries_of(output)  # what a killed merge into `output` left behind
        with atomic_dir(output, overwrite=args.overwrite) as folder:
            made = make_soup(args, data, checkpoints, folder, anchor, skip)
            soup = write_soup_folder(args, checkpoints, made, folder, argv, dropped)
    print(format_table(soup))
    print(f"wrote {output}")
    if args.push_to_hub:
        from hf_soup.publish import publish_folder

        print(publish_folder(output, args.push_to_hub, private=args.private, license=args.license))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
