"""The merge's flags: `MergeArguments`, `MergeDataArguments` and their parser (bad input: one line, exit 2).

    args, data = parse_args(["--ingredients", "runs/rte", "--recipe", "greedy", "--output", "soups/rte"])

Every check that needs no file runs here, so a typo costs nothing.
"""

from __future__ import annotations

import sys
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from hf_soup.data import DataArguments
from hf_soup.errors import DefaultsHelpFormatter, SoupError
from hf_soup.extra_tests import parse_extra_tests
from hf_soup.geometry import check_flags as check_geometry_flags
from hf_soup.recipes.context import CRITERIA
from hf_soup.recipes.filtered_uniform import DEFAULT_FILTER_MARGIN
from hf_soup.recipes.registry import RECIPE_RUNS
from hf_soup.temperature import check_request as check_calibration

DEFAULT_MAX_SEQ_LENGTH = 128
# Scoring on a CPU: a batch's activations live in the RAM that also holds the scoring model and the
# greedy running sum. BERT-base measured ~385 MB of activations at 64 rows x 128 tokens and ~130 MB
# at 2,048 tokens, at the same speed (a CPU is busy either way); 1,024 keeps them below the largest
# tensor's temporary, so the two models plus imports stay the peak.
CPU_MAX_BATCH_TOKENS = 1024
# The recipe a merge writes unless told otherwise: the one whose gain over the best single the
# replicated benchmark supports (BENCHMARKS.md, "Soup quality"; benchmarks/soup_quality.py).
DEFAULT_RECIPE = "learned"
# Keys of the requested recipe's results row that `results.soup` repeats (they qualify its scores).


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
    learned_epochs: int = field(default=2, metadata={"help": "learned: passes over the held-out split"})
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
        default=32,
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

    # `python -m hf_soup.merge` runs the package's __main__.py: name the command, not that file.
    prog = "python -m hf_soup.merge" if Path(sys.argv[0]).name == "__main__.py" else None
    parser = HfArgumentParser((MergeArguments, MergeDataArguments), prog=prog, formatter_class=DefaultsHelpFormatter)

    def one_line_error(message: str) -> None:
        raise SoupError(message)

    parser.error = one_line_error  # argparse's usage dump -> our one line + exit 2
    args, data, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        raise SoupError(f"unrecognized arguments: {' '.join(unknown)}")
    check_args(args)
    return args, data


def check_args(args: MergeArguments) -> None:
    """Every check of the flags that reads no ingredient (SoupError naming the flag): before any work."""
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


# The flags every merge names; the rest are options with defaults.
NAMED = ("ingredients", "recipe", "output")


def arguments_from(
    ingredients: list[str], recipe: str, output: str, options: dict[str, Any]
) -> tuple[MergeArguments, MergeDataArguments]:
    """The CLI's dataclasses from keyword options named as its flags (`criterion="loss"`, `task="rte"`), checked."""
    merge_names = {f.name for f in fields(MergeArguments)} - set(NAMED)
    data_names = {f.name for f in fields(MergeDataArguments)}
    unknown = sorted(set(options) - merge_names - data_names)
    if unknown:
        raise SoupError(
            f"{unknown[0]!r}: not an option of the merge (the options are the flags of python -m hf_soup.merge)"
        )
    args = MergeArguments(
        ingredients=ingredients,
        output=output,
        recipe=recipe,
        **{k: v for k, v in options.items() if k in merge_names},
    )
    data = MergeDataArguments(**{k: v for k, v in options.items() if k in data_names and k not in merge_names})
    check_args(args)
    return args, data


def options_of(args: MergeArguments, data: MergeDataArguments) -> dict[str, Any]:
    """The options that differ from their defaults, by flag name (the inverse of `arguments_from`)."""
    options = {}
    for instance in (args, data):
        for item in fields(instance):
            value = getattr(instance, item.name)
            if item.name not in NAMED and item.name not in options and value != _default(item):
                options[item.name] = value
    return options


def command_of(args: MergeArguments, data: MergeDataArguments) -> list[str]:
    """The `python -m hf_soup.merge` flags that make the same merge (what soup.json records for an API call)."""
    argv = ["--ingredients", *args.ingredients, "--recipe", args.recipe, "--output", args.output]
    for name, value in options_of(args, data).items():
        if isinstance(value, bool):
            argv += [f"--{name}"] if value else [f"--{name}", "False"]
        elif isinstance(value, (list, tuple)):
            argv += [f"--{name}", *map(str, value)]
        else:
            argv += [f"--{name}", str(value)]
    return argv


def _default(item: Field) -> Any:
    if item.default is not MISSING:
        return item.default
    return item.default_factory() if item.default_factory is not MISSING else MISSING
