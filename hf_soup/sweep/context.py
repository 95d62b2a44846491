"""What the grid points of one sweep share, and what one point trains with.

`SweepContext` is built once by `planning.plan_sweep`; the functions here derive one point's
TrainingArguments and options from it (the same in planning's checks, the loop and the search), the
shared start's stages, and the hyperparameters an ingredient records.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from hf_soup import models
from hf_soup.data import DataArguments, TaskSplits
from hf_soup.errors import SoupError
from hf_soup.sweep.arguments import PER_RUN_FINETUNE_FIELDS, TRAINING_FIELDS, FineTuneArguments, SweepArguments
from hf_soup.sweep.grid import RunConfig
from hf_soup.sweep.identity import jsonable
from hf_soup.tasks import Task

WORK_DIR = ".work"
TRAJECTORY_DIR = ".trajectory"  # --keep_trajectory: <output_dir>/.trajectory/<run id>/step-<n>/
SHARED_DIR = ".shared"

# Core hyperparameters recorded in every ingredient (plus every axis and every fixed setting).
RECORDED_TRAINING_FIELDS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_steps",
    "lr_scheduler_type",
    "max_grad_norm",
    "label_smoothing_factor",
    "optim",
)


@dataclass
class SweepContext:
    """Everything the grid points of one sweep share, built once by `plan_sweep` (no global state)."""

    task: Task
    splits: TaskSplits
    features: Any  # datasets.DatasetDict of token ids (+ `length`, `label`); set once every point is checked
    tokenizer: Any
    base: models.BaseModel
    family: str
    model_args: models.ModelArguments
    data_args: DataArguments
    finetune: FineTuneArguments
    training_args: TrainingArguments  # the fixed settings; per-run values are applied on top
    config_overrides: dict[str, Any]  # fixed model-config settings
    config_keys: frozenset[str]  # model-config fields (routes per-run values)
    output_dir: Path
    sweep_id: str
    shared: dict[str, Any]  # what sweep_id is a hash of
    precision: str
    label_token_ids: list[int] | None = None
    command: str = ""
    start_dir: Path | None = None  # LP-FT / warm-start folder every point starts from (None: the base)
    start: dict[str, Any] | None = None
    train_lengths: list[int] = field(default_factory=list)


@dataclass
class Sweep:
    """A planned sweep: its context, the whole grid, and this job's shard of it."""

    context: SweepContext
    runs: list[RunConfig]
    mine: list[RunConfig]
    axes: dict[str, Any]
    sweep_args: SweepArguments


def start_stages(finetune: FineTuneArguments) -> list[str]:
    """The shared-start stages a sweep runs, in order: LP-FT first, then the warm start."""
    return [s for s, on in (("lp-ft", finetune.lp_ft_epochs > 0), ("warm-start", finetune.warm_start_epochs > 0)) if on]


def start_stage_arguments(context: SweepContext, stage: str) -> tuple[TrainingArguments, FineTuneArguments]:
    """TrainingArguments of one shared-start stage: the fixed settings, the stage's epochs and
    learning rate, seed = head_init_seed, no checkpoints, no evaluation, no early stopping."""
    finetune = context.finetune
    lp = stage == "lp-ft"
    overrides = {
        "num_train_epochs": finetune.lp_ft_epochs if lp else finetune.warm_start_epochs,
        "max_steps": -1,
        "seed": context.model_args.head_init_seed,
        "save_strategy": "no",
        "eval_strategy": "no",
        "learning_rate": finetune.lp_ft_learning_rate
        if lp
        else (finetune.warm_start_learning_rate or context.training_args.learning_rate),
    }
    options = FineTuneArguments(freeze_layers=finetune.freeze_layers)
    return training_arguments_for(None, context, work_name=stage, options=options, **overrides), options


def training_arguments_for(
    run: RunConfig | None,
    context: SweepContext,
    *,
    work_name: str | None = None,
    options: FineTuneArguments | None = None,
    **overrides: Any,
) -> TrainingArguments:
    """The fixed TrainingArguments + this point's values + the sweep's precision and wiring."""
    base = context.training_args
    values = {f.name: getattr(base, f.name) for f in fields(base) if f.init}
    if run is not None:
        values.update({k: v for k, v in run.values.items() if k in TRAINING_FIELDS})
    values.update(overrides)
    values["output_dir"] = str(context.output_dir / WORK_DIR / (work_name or run.run_id))
    values["bf16"], values["fp16"] = context.precision == "bf16", context.precision == "fp16"
    options = options or run_options(run, context)
    resumable = values["save_strategy"] != "no" and not values["save_only_model"]
    if options.early_stopping_patience > 0:
        strategy = values["eval_strategy"] if values["eval_strategy"] != "no" else "epoch"
        values.update(
            eval_strategy=strategy,
            save_strategy=strategy,
            load_best_model_at_end=True,
            metric_for_best_model=values["metric_for_best_model"] or "primary",
            save_total_limit=values["save_total_limit"] or 1,
            save_only_model=not resumable,
        )
        if strategy == "steps":
            values["save_steps"] = values["eval_steps"] or values["logging_steps"]
    try:
        return TrainingArguments(**values)
    except (ValueError, TypeError) as err:
        where = f"grid point {run.run_id}" if run is not None else "training arguments"
        raise SoupError(f"{where}: {' '.join(str(err).split())}") from None


def run_options(run: RunConfig | None, context: SweepContext) -> FineTuneArguments:
    options = FineTuneArguments(**{f.name: getattr(context.finetune, f.name) for f in fields(FineTuneArguments)})
    for key in PER_RUN_FINETUNE_FIELDS:
        if run is not None and key in run.values:
            setattr(options, key, run.values[key])
    return options


def recorded_hyperparameters(
    run: RunConfig, args: TrainingArguments, options: FineTuneArguments, context: SweepContext
) -> dict[str, Any]:
    """What ingredient.json records in `hyperparameters` (docs/FORMATS.md): core knobs, fixed settings, axes."""
    recorded = {name: jsonable(getattr(args, name)) for name in RECORDED_TRAINING_FIELDS}
    recorded["max_seq_length"] = context.data_args.max_seq_length
    recorded.update({k: getattr(options, k) for k in PER_RUN_FINETUNE_FIELDS})
    recorded.update(context.config_overrides)
    recorded.update({k: jsonable(v) for k, v in context.shared["fixed"].items()})
    recorded.update({k: jsonable(v) for k, v in run.values.items()})
    recorded.pop("seed", None)  # top-level field
    return recorded
