"""Merge fine-tuned ingredients into one model: uniform, greedy or learned soup, or checkpoint averaging.

    python -m hf_soup.merge --ingredients runs/rte --recipe greedy --output soups/rte-greedy
    python -m hf_soup.merge --ingredients runs/rte other/*-seed* --recipe uniform --output soups/rte-uniform
    python -m hf_soup.merge --ingredients my_models/a my_models/b --task rte --glue_dir ../shared/glue \\
        --recipe greedy --criterion loss --strict --output soups/mine      # plain HF folders: give --task
    python -m hf_soup.merge --ingredients out/run1 --recipe average-last --last_n 3 --output out/avg \\
        --skip_scoring                                                     # last 3 checkpoint-* of one run
    python -m hf_soup.merge --ingredients runs/rte --recipe learned --learned_granularity layer --output soups/l

What one run does, in order:
  1. find the ingredients (a sweep folder expands to its runs) and refuse unmixable ones, naming
     the first difference (hf_soup.checkpoints);
  2. rebuild the held-out and test splits the sweep used (from ingredient.json; its fingerprint
     must match) and score every ingredient on both (hf_soup.scoring; logits kept for the ensemble);
  3. uniform soup, greedy soup (always: they are the baselines), learned soup if asked, the
     soft-vote ensemble (k× inference cost) and the best single ingredient chosen on held-out;
     the best single on test is reported as an oracle only — test (GLUE dev) never chooses;
  4. write the recipe's soup as a normal HF model folder (config, tokenizer, model.safetensors,
     sharded when large) + soup.json (docs/FORMATS.md), atomically: a temp folder renamed into
     place, under a lock, so a killed or concurrent merge never leaves a half-written soup.
Memory: one running sum (float32, one model) + the scoring model + one tensor, whatever the number
of ingredients (ingredients are memory-mapped and read one tensor at a time).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hf_soup.atomic import atomic_dir, clear_temporaries_of, exclusive_lock, write_json_atomic
from hf_soup.card import write_card
from hf_soup.checkpoints import (
    Checkpoint,
    check_compatible,
    copy_model_files,
    find_ingredients,
    find_trainer_checkpoints,
    save_state,
)
from hf_soup.data import DataArguments, load_glue
from hf_soup.errors import SoupError, cli_main
from hf_soup.ingredient import library_versions, utc_now
from hf_soup.soup import RECIPES, average_checkpoints, greedy_soup, learned_soup, uniform_soup
from hf_soup.tasks import Task, get_task

if TYPE_CHECKING:  # scoring pulls in scipy/sklearn/datasets: imported only when a merge scores
    from hf_soup.scoring import Scorer

SOUP_FILE = "soup.json"
SOUP_FORMAT = "hf_soup.soup"
SOUP_FORMAT_VERSION = 1
CRITERIA = ("metric", "loss")
DEFAULT_MAX_SEQ_LENGTH = 128


@dataclass
class MergeArguments:
    ingredients: list[str] = field(
        metadata={
            "help": "model folders, sweep output folders (expanded to their runs) or globs; "
            "average-last: one Trainer output folder with checkpoint-* inside"
        }
    )
    output: str = field(metadata={"help": "the soup folder to write (refused if it exists, unless --overwrite)"})
    recipe: str = field(default="greedy", metadata={"help": f"one of {', '.join(RECIPES)}"})
    criterion: str = field(default="metric", metadata={"help": "held-out selection: 'metric' (primary) or 'loss'"})
    strict: bool = field(default=False, metadata={"help": "greedy: keep a candidate only if the score increases"})
    last_n: int = field(default=5, metadata={"help": "average-last: how many of the newest checkpoints"})
    allow_pickle: bool = field(
        default=False, metadata={"help": "accept pickled .bin weights (loaded with torch.load(weights_only=True))"}
    )
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output folder"})
    skip_scoring: bool = field(default=False, metadata={"help": "uniform/average-last: write weights, score nothing"})
    batch_size: int = field(default=64, metadata={"help": "scoring batch size"})
    device: str | None = field(default=None, metadata={"help": "scoring device (default: cuda when available)"})
    learned_granularity: str = field(default="model", metadata={"help": "learned: 'model' or 'layer' coefficients"})
    learned_epochs: int = field(default=5, metadata={"help": "learned: passes over the held-out split"})
    learned_lr: float = field(default=0.05, metadata={"help": "learned: Adam learning rate on the coefficients"})
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
    """DataArguments whose task and length default to what the ingredients recorded."""

    task: str | None = field(default=None, metadata={"help": "GLUE task (default: from ingredient.json)"})
    max_seq_length: int | None = field(
        default=None, metadata={"help": "default: the ingredients' max_seq_length hyperparameter, else 128"}
    )


def parse_args(argv: list[str] | None) -> tuple[MergeArguments, MergeDataArguments]:
    from transformers import HfArgumentParser

    parser = HfArgumentParser((MergeArguments, MergeDataArguments))

    def one_line_error(message: str) -> None:
        raise SoupError(message)

    parser.error = one_line_error  # argparse's usage dump -> our one line + exit 2
    args, data, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        raise SoupError(f"unrecognized arguments: {' '.join(unknown)}")
    if args.recipe not in RECIPES:
        raise SoupError(f"--recipe {args.recipe!r}: must be one of {', '.join(RECIPES)}")
    if args.criterion not in CRITERIA:
        raise SoupError(f"--criterion {args.criterion!r}: must be 'metric' or 'loss'")
    if args.learned_granularity not in ("model", "layer"):
        raise SoupError(f"--learned_granularity {args.learned_granularity!r}: must be 'model' or 'layer'")
    if args.last_n < 1 or args.batch_size < 1 or args.learned_epochs < 0:
        raise SoupError("--last_n, --batch_size must be positive and --learned_epochs non-negative")
    if args.skip_scoring and args.recipe in ("greedy", "learned"):
        raise SoupError(f"--skip_scoring: the {args.recipe} recipe chooses on held-out scores, it needs scoring")
    return args, data


# ----------------------------------------------------------------------------- ingredients and data


def open_ingredients(args: MergeArguments) -> list[Checkpoint]:
    if args.recipe == "average-last":
        if len(args.ingredients) != 1:
            raise SoupError("--recipe average-last: give exactly one Trainer output folder as --ingredients")
        found = find_trainer_checkpoints(args.ingredients[0])
        if len(found) < args.last_n:
            raise SoupError(
                f"{args.ingredients[0]}: {len(found)} checkpoint-* folders, fewer than --last_n {args.last_n}"
            )
        paths = found[-args.last_n :]
    else:
        paths = find_ingredients(args.ingredients)
    checkpoints = [Checkpoint(path, allow_pickle=args.allow_pickle) for path in paths]
    check_compatible(checkpoints)
    return checkpoints


def data_arguments(data: MergeDataArguments, checkpoints: list[Checkpoint]) -> DataArguments:
    """The split the sweep used: task, source and held-out carve from the first ingredient.json."""
    record = next((c.ingredient for c in checkpoints if c.ingredient), None)
    task = data.task or (record or {}).get("task")
    if task is None:
        raise SoupError(
            f"{checkpoints[0].path}: no ingredient.json, so the task is unknown; pass --task (and --glue_dir) "
            "to score plain model folders, or --skip_scoring"
        )
    if record and get_task(task).name != get_task(record["task"]).name:
        raise SoupError(f"--task {task}: the ingredients were fine-tuned on {record['task']!r}")
    values = asdict(data)
    values["task"] = task
    split = (record or {}).get("split") or {}
    source = str(split.get("source") or "")
    if data.glue_dir is None and source.startswith("local:"):
        values["glue_dir"] = source.removeprefix("local:")
    if data.dataset_revision is None and source.startswith("hub:") and "@" in source:
        values["dataset_revision"] = source.split("@", 1)[1]
    for name in ("heldout_seed", "heldout_size"):
        if split.get(name) is not None:
            values[name] = split[name]
    if data.max_test_samples is None and split.get("max_test_samples") is not None:
        values["max_test_samples"] = split["max_test_samples"]
    recorded_length = ((record or {}).get("hyperparameters") or {}).get("max_seq_length")
    values["max_seq_length"] = data.max_seq_length or recorded_length or DEFAULT_MAX_SEQ_LENGTH
    return DataArguments(**values)


def prepare_scorer(args: MergeArguments, data: MergeDataArguments, checkpoints: list[Checkpoint]):
    """(task, split description, Scorer) for the held-out and test splits the ingredients were scored on.

    The model family (encoder, T5 classification, T5 text-to-text) is read from the first
    ingredient's config: `hf_soup.models.scoring_hooks` picks the model class, the logits function
    and the input encoding it was trained with.
    """
    from transformers import AutoConfig, AutoTokenizer

    from hf_soup.models import scoring_hooks
    from hf_soup.scoring import build_scorer, tokenize_for_scoring

    data_args = data_arguments(data, checkpoints)
    splits = load_glue(data_args)
    record = next((c.ingredient for c in checkpoints if c.ingredient), None)
    recorded = ((record or {}).get("split") or {}).get("fingerprint")
    if recorded and recorded not in (splits.fingerprint, splits.legacy_fingerprint()):
        raise SoupError(
            f"{checkpoints[0].path}/ingredient.json: split fingerprint {recorded} does not match the held-out split "
            f"rebuilt from {splits.source} ({splits.fingerprint}); pass the --glue_dir the sweep used"
        )
    tokenizer_source = next((c for c in checkpoints if c.tokenizer_files()), None)
    if tokenizer_source is None:
        raise SoupError(f"{checkpoints[0].path}: no tokenizer files in any ingredient; cannot score")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source.path)
    hooks = scoring_hooks(
        AutoConfig.from_pretrained(checkpoints[0].path), splits.task, tokenizer, data_args.max_seq_length
    )
    tokenized = tokenize_for_scoring(
        splits,
        tokenizer,
        data_args.max_seq_length,
        encoder=hooks.pop("encoder", None),
        encoder_name=hooks.pop("encoder_name", "classification"),
    )
    scorer = build_scorer(
        str(checkpoints[0].path),
        splits.task,
        tokenized,
        pad_token_id=tokenizer.pad_token_id or 0,
        batch_size=args.batch_size,
        device=args.device,
        **hooks,
    )
    return splits.task, splits.describe(), scorer


# ----------------------------------------------------------------------------- the soups


def selection_score(metrics: dict[str, float], criterion: str) -> float:
    """Higher is better: the primary metric, or minus the loss."""
    return float(metrics["primary"]) if criterion == "metric" else -float(metrics["loss"])


def _progress(iterable, description: str):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=description, leave=False, file=sys.stderr)


def _scores(scorer: Scorer, state) -> dict[str, dict]:
    scorer.load_state(state)
    return {"heldout": scorer.score("heldout").metrics, "test": scorer.score("test").metrics}


def _learned(args: MergeArguments, scorer: Scorer, task: Task, checkpoints: list[Checkpoint]):
    """Fit the learned soup on held-out with the scorer's model and batches (cross-entropy / MSE)."""
    import torch.nn.functional as F

    scorer.load_state(checkpoints[0])  # integer buffers and anything not mixed come from here
    batches = list(zip(scorer.batches("heldout"), scorer.batch_labels("heldout")))

    def loss_fn(logits: torch.Tensor, batch) -> torch.Tensor:
        labels = batch[1]
        if task.is_regression:
            return F.mse_loss(logits.float().reshape(-1), labels.float())
        return F.cross_entropy(logits.float(), labels.long())

    return learned_soup(
        checkpoints,
        scorer.model,
        batches,
        loss_fn,
        forward=lambda model, batch: scorer.logits_fn(model, batch[0]),
        granularity=args.learned_granularity,
        epochs=args.learned_epochs,
        lr=args.learned_lr,
        device=scorer.device,
        progress=lambda it: _progress(it, "learned soup epochs"),
    )


def make_soup(args: MergeArguments, data: MergeDataArguments, checkpoints: list[Checkpoint], folder: Path) -> dict:
    """Score, mix, write the recipe's weights into `folder`; return the soup.json record (without header)."""
    n = len(checkpoints)
    weights = [0.0] * n
    if args.skip_scoring:
        state = (average_checkpoints if args.recipe == "average-last" else uniform_soup)(
            checkpoints, progress=lambda it: _progress(it, "averaging tensors")
        )
        save_state(state, folder, args.max_shard_size)
        record = next((c.ingredient for c in checkpoints if c.ingredient), None)
        return {"task": (record or {}).get("task"), "weights": [1 / n] * n, "results": {}, "split": None}

    from hf_soup.ensemble import ensemble_metrics, inference_cost

    task, split, scorer = prepare_scorer(args, data, checkpoints)
    heldout, test = [], []
    for checkpoint in _progress(checkpoints, "scoring ingredients"):
        scorer.load_state(checkpoint)
        heldout.append(scorer.score("heldout"))
        test.append(scorer.score("test"))
    selection = [selection_score(result.metrics, args.criterion) for result in heldout]
    best = int(np.argmax(selection))
    oracle = int(np.argmax([result.metrics["primary"] for result in test]))
    results: dict[str, Any] = {
        "best_single": {"name": checkpoints[best].name, "heldout": heldout[best].metrics, "test": test[best].metrics},
        "ensemble": {
            "heldout": ensemble_metrics(task, [r.logits for r in heldout], scorer.references("heldout")),
            "test": ensemble_metrics(task, [r.logits for r in test], scorer.references("test")),
            "members": n,
            "inference_cost": inference_cost(n),
        },
        "oracle_best_single": {"name": checkpoints[oracle].name, "test": test[oracle].metrics, "oracle": True},
    }
    extra: dict[str, Any] = {}

    if args.recipe == "average-last":
        state = average_checkpoints(checkpoints, progress=lambda it: _progress(it, "averaging tensors"))
        results["uniform"] = results["soup"] = _scores(scorer, state)
        save_state(state, folder, args.max_shard_size)
        del state
        weights = [1 / n] * n
    else:
        state = uniform_soup(checkpoints, progress=lambda it: _progress(it, "uniform soup"))
        results["uniform"] = _scores(scorer, state)
        if args.recipe == "uniform":
            save_state(state, folder, args.max_shard_size)
            weights = [1 / n] * n
        del state

        greedy = greedy_soup(
            checkpoints,
            selection,
            evaluate=lambda candidate: scorer.score_state(candidate, "heldout").metrics,
            key=lambda metrics: selection_score(metrics, args.criterion),
            strict=args.strict,
            evaluations=[result.metrics for result in heldout],
            progress=lambda it: _progress(it, "greedy soup candidates"),
        )
        kept_names = [checkpoints[i].name for i in greedy.kept]
        # held-out: the trace already scored exactly these weights (the lazy view is bitwise the soup)
        scorer.load_state(greedy.state)
        greedy_scores = {"heldout": greedy.evaluation, "test": scorer.score("test").metrics}
        results["greedy"] = {**greedy_scores, "kept": kept_names}
        extra["greedy_trace"] = [
            {
                "step": step.step,
                "candidate": checkpoints[step.index].name,
                "heldout": step.evaluation,
                "accepted": step.accepted,
                "soup_size": step.soup_size,
            }
            for step in greedy.trace
        ]
        if args.recipe == "greedy":
            save_state(greedy.state, folder, args.max_shard_size)
            weights = [1 / len(greedy.kept) if i in greedy.kept else 0.0 for i in range(n)]
        del greedy

        if args.recipe == "learned":
            learned = _learned(args, scorer, task, checkpoints)
            results["learned"] = _scores(scorer, learned.state)
            save_state(learned.state, folder, args.max_shard_size)
            coefficients = learned.coefficients
            weights = (coefficients if coefficients.ndim == 1 else coefficients.mean(dim=1)).tolist()
            extra["learned"] = {
                "granularity": learned.granularity,
                "coefficients": coefficients.tolist(),
                "tensors": learned.mixed_names if learned.granularity == "layer" else None,
                "epochs": args.learned_epochs,
                "lr": args.learned_lr,
                "losses": learned.losses,
            }
        results["soup"] = {key: results[args.recipe][key] for key in ("heldout", "test")}

    return {
        "task": task.name,
        "primary_metric": task.primary_metric,
        "split": split,
        "weights": weights,
        "heldout": [r.metrics for r in heldout],
        "test": [r.metrics for r in test],
        "selection": selection,
        "results": results,
        **extra,
    }


# ----------------------------------------------------------------------------- soup.json and the table


def soup_record(args: MergeArguments, checkpoints: list[Checkpoint], made: dict, argv: list[str] | None) -> dict:
    """The soup.json payload (docs/FORMATS.md)."""
    record = next((c.ingredient for c in checkpoints if c.ingredient), None) or {}
    rows = []
    for i, checkpoint in enumerate(checkpoints):
        ingredient = checkpoint.ingredient or {}
        row = {
            "name": checkpoint.name,
            "path": str(checkpoint.path),
            "hyperparameters": ingredient.get("hyperparameters", {}),
            "seed": ingredient.get("seed"),
        }
        if "heldout" in made:
            row["heldout"], row["test"] = made["heldout"][i], made["test"][i]
        row["kept"] = made["weights"][i] > 0
        row["weight"] = made["weights"][i]
        rows.append(row)
    if "selection" in made:
        order = sorted(range(len(rows)), key=lambda i: -made["selection"][i])
        rows = [rows[i] for i in order]
    split = made.get("split") or record.get("split")
    payload = {
        "format": SOUP_FORMAT,
        "format_version": SOUP_FORMAT_VERSION,
        "name": args.name or Path(args.output).name,
        "recipe": args.recipe,
        "task": made.get("task"),
        "primary_metric": made.get("primary_metric") or record.get("primary_metric"),
        "criterion": args.criterion,
        "strict": args.strict,
        "base_model": record.get("base_model") or {"name_or_path": None, "revision": None, "weights_sha256": None},
        "split": {key: split.get(key) for key in ("source", "fingerprint", "heldout_size", "test_size")}
        if split
        else None,
        "ingredients": rows,
    }
    if "greedy_trace" in made:
        payload["greedy_trace"] = made["greedy_trace"]
    payload["results"] = made["results"]
    if "learned" in made:
        payload["learned"] = made["learned"]
    merge_command = "python -m hf_soup.merge " + shlex.join(sys.argv[1:] if argv is None else argv)
    payload["commands"] = {"sweep": record.get("command"), "merge": merge_command}
    payload["versions"] = library_versions()
    payload["created"] = utc_now()
    return payload


def format_table(soup: dict) -> str:
    """The comparison printed after every merge: one row per baseline/soup, held-out and test."""
    results = soup["results"]
    if not results:
        return f"{soup['recipe']} soup of {len(soup['ingredients'])} ingredients written (not scored)"
    metric = soup.get("primary_metric") or "primary"
    labels = {
        "best_single": lambda r: f"best single ({r['name']})",
        "uniform": lambda r: f"uniform soup ({len(soup['ingredients'])})",
        "greedy": lambda r: f"greedy soup ({len(r['kept'])} kept)",
        "learned": lambda r: f"learned soup ({soup['learned']['granularity']})",
        "ensemble": lambda r: f"ensemble ({r['members']} models, {r['inference_cost']}x inference)",
        "oracle_best_single": lambda r: f"oracle best single on test ({r['name']})",
    }
    lines = [
        f"primary metric: {metric}; chosen on held-out by {soup['criterion']}",
        f"{'':56s} {'heldout':>9s} {'heldout loss':>13s} {'test':>9s} {'test loss':>10s}",
    ]

    def cell(row: dict, split: str, key: str, width: int) -> str:
        value = row.get(split, {}).get(key)
        return f"{value:{width}.4f}" if isinstance(value, (int, float)) else f"{'-':>{width}s}"

    for key, label in labels.items():
        if key in results:
            row = results[key]
            marker = "  <- written" if key == soup["recipe"] else ""
            lines.append(
                f"{label(row)[:56]:56s} {cell(row, 'heldout', 'primary', 9)} {cell(row, 'heldout', 'loss', 13)} "
                f"{cell(row, 'test', 'primary', 9)} {cell(row, 'test', 'loss', 10)}{marker}"
            )
    if soup["recipe"] == "average-last":
        lines.append(f"written: the average of the last {len(soup['ingredients'])} checkpoints (row 'uniform')")
    lines.append("test = GLUE dev: reported, never used to choose; 'oracle' rows are chosen on test.")
    return "\n".join(lines)


def _refuse_existing(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise SoupError(f"{output}: already exists (refusing to overwrite; pass --overwrite)")


def main(argv: list[str] | None = None) -> int:
    args, data = parse_args(argv)
    output = Path(args.output)
    _refuse_existing(output, args.overwrite)  # fail fast, before any work
    checkpoints = open_ingredients(args)  # read-only: bad input leaves no trace, not even a lock file
    with exclusive_lock(output):
        _refuse_existing(output, args.overwrite)  # another merge may have finished meanwhile
        clear_temporaries_of(output)  # what a killed merge into `output` left behind
        with atomic_dir(output, overwrite=args.overwrite) as folder:
            made = make_soup(args, data, checkpoints, folder)
            files_from = next((c for c in checkpoints if c.tokenizer_files()), checkpoints[-1])
            copy_model_files(checkpoints[0].path, folder)
            copy_model_files(files_from.path, folder)
            if args.recipe == "average-last" and not files_from.tokenizer_files():
                copy_model_files(Path(args.ingredients[0]), folder)  # the run folder's save_model()
            soup = soup_record(args, checkpoints, made, argv)
            write_json_atomic(folder / SOUP_FILE, soup)
            if soup["results"]:  # the card reports scores; an unscored average gets none
                write_card(
                    folder,
                    license=args.license,
                    repo_id=args.push_to_hub,
                    base_model=args.base_model_id,
                    local_path=output,
                )
    print(format_table(soup))
    print(f"wrote {output}")
    if args.push_to_hub:
        from hf_soup.publish import publish_folder

        print(publish_folder(output, args.push_to_hub, private=args.private, license=args.license))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
