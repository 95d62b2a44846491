"""The Trainer extensions a grid point trains with, and the few steps around one training run.

    python -m pytest tests/test_sweep_training.py      # tiny random BERT/T5, seconds

What is here and why it is not the stock Trainer:
  * `SoupTrainer` + `EpochLengthGroupedSampler`: length-grouped batches from the cached `length`
    column, in an order drawn from (seed, epoch) alone, so every rank and every resumed run sees
    the batches an uninterrupted run sees;
  * `Text2TextCollator`: `t5-text2text` targets are a label word's first token + eos;
  * `heldout_metrics`: evaluation during training (early stopping) on held-out, any family;
  * `load_model` / `train_model` / `score_model` / `write_model_folder`: what a grid point and the
    shared start both do (load with the sweep's fixed head initialisation, train, score with the
    merge's own scorer, rename a complete folder into place).
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from hf_soup import models
from hf_soup.atomic import atomic_dir, write_json_atomic
from hf_soup.callbacks import TrajectoryAveragingCallback
from hf_soup.families import family_row
from hf_soup.ingredient import write_ingredient
from hf_soup.metrics import make_compute_metrics
from hf_soup.quiet import quiet_transformers
from hf_soup.sweep.arguments import TRAINING_FIELDS, FineTuneArguments
from hf_soup.sweep.context import SweepContext, run_options
from hf_soup.sweep.grid import RunConfig


class SoupTrainer(Trainer):
    """Trainer with length-grouped training batches read from the cached `length` column.

    transformers 5.0 dropped `group_by_length` (later releases moved it to
    `train_sampling_strategy`, which looks for the length column after unused columns were
    dropped and so re-measures every example). Passing `train_lengths` turns grouping on: batches
    of similar length, shuffled in mega-batches by the run's seed (transformers' own
    LengthGroupedSampler), so dynamic padding pads little.
    """

    def __init__(self, *args: Any, train_lengths: list[int] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.train_lengths = train_lengths

    def _get_train_sampler(self, train_dataset=None):
        if self.train_lengths:
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochLengthGroupedSampler(batch, self.train_lengths, seed)
        return super()._get_train_sampler(train_dataset)


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order drawn from (seed, epoch) alone, not from the global RNG.

    So every rank draws the same order, and a run resumed mid-epoch (Trainer skips the batches
    already seen) sees exactly the batches the uninterrupted run would have seen.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by accelerate's data loader every epoch
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class Text2TextCollator:
    """Pads inputs and turns each class id into the target `<label word's first token> <eos>`."""

    def __init__(self, tokenizer: Any, label_token_ids: list[int], eos_token_id: int, pad_to_multiple_of=None):
        self.tokenizer = tokenizer
        self.label_token_ids = torch.tensor(label_token_ids)
        self.eos_token_id = eos_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        classes = torch.tensor([int(f["label"]) for f in features])
        rows = [{k: v for k, v in f.items() if k not in ("label", "labels")} for f in features]
        batch = self.tokenizer.pad(rows, return_tensors="pt", pad_to_multiple_of=self.pad_to_multiple_of)
        targets = self.label_token_ids[classes]
        batch["labels"] = torch.stack([targets, torch.full_like(targets, self.eos_token_id)], dim=1)
        return batch


def collator_for(context: SweepContext):
    from transformers import DataCollatorWithPadding

    multiple = 8 if torch.cuda.is_available() else None  # tensor-core friendly shapes on GPUs
    if family_row(context.family).label_words:
        return Text2TextCollator(context.tokenizer, context.label_token_ids, context.base.config.eos_token_id, multiple)
    return DataCollatorWithPadding(context.tokenizer, pad_to_multiple_of=multiple)


def heldout_metrics(context: SweepContext):
    """(compute_metrics, preprocess_logits_for_metrics) for Trainer.evaluate on heldout, any family."""
    compute = make_compute_metrics(context.task)
    if not family_row(context.family).label_words:
        return compute, lambda logits, labels: logits[0] if isinstance(logits, tuple) else logits
    label_ids = torch.tensor(context.label_token_ids)
    lookup = {int(token): i for i, token in enumerate(context.label_token_ids)}

    def preprocess(logits, labels):
        logits = logits[0] if isinstance(logits, tuple) else logits
        return logits[:, 0, :].index_select(-1, label_ids.to(logits.device))

    def metrics(prediction):
        prediction.label_ids = np.array([lookup[int(t)] for t in np.asarray(prediction.label_ids)[:, 0]])
        return compute(prediction)

    return metrics, preprocess


def load_model(context: SweepContext, run: RunConfig | None, *, source: Path | None = None) -> tuple[Any, list]:
    per_run = {
        k: v for k, v in (run.values.items() if run else ()) if k in context.config_keys and k not in TRAINING_FIELDS
    }
    model, new = models.load_for_task(
        source or context.start_dir or context.base.local_dir,
        context.family,
        context.task,
        head_init_seed=context.model_args.head_init_seed,
        config_overrides={**context.config_overrides, **per_run},
        label_words=context.model_args.label_words,
        token_ids=context.label_token_ids,
        allow_pickle=context.model_args.allow_pickle,
    )
    models.freeze_layers(model, run_options(run, context).freeze_layers)
    return model, new


def make_trainer(
    context: SweepContext,
    args: TrainingArguments,
    options: FineTuneArguments,
    *,
    trainer_class: type[SoupTrainer] | None = None,
    **kwargs: Any,
) -> SoupTrainer:
    """The Trainer every grid point trains with (`model=` or `model_init=` in `kwargs`).

    Apart from `train_model` so that `hf_soup.sweep.hpo` builds the very same Trainer around a
    `model_init` for `Trainer.hyperparameter_search`.
    """
    evaluating = args.eval_strategy != "no"  # evaluation during training is always on heldout, never test
    compute_metrics, preprocess = heldout_metrics(context) if evaluating else (None, None)
    return (trainer_class or SoupTrainer)(
        args=args,
        train_dataset=context.features["train"],
        eval_dataset=context.features["heldout"] if evaluating else None,
        data_collator=collator_for(context),
        processing_class=context.tokenizer,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=preprocess,
        train_lengths=context.train_lengths if context.finetune.group_by_length else None,
        callbacks=trainer_callbacks(args, options),
        **kwargs,
    )


AVERAGE_DIR = "average"  # under the run's .work/<run id>/: the trajectory points --average_last_k averages


def trainer_callbacks(args: TrainingArguments, options: FineTuneArguments) -> list[Any] | None:
    """Early stopping on held-out, and trajectory averaging (`--average_last_k`), when asked for."""
    callbacks: list[Any] = []
    if options.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(options.early_stopping_patience, options.early_stopping_threshold))
    if options.average_last_k > 1:
        work = Path(args.output_dir) / AVERAGE_DIR
        callbacks.append(TrajectoryAveragingCallback(options.average_last_k, work, every=options.average_every))
    return callbacks or None


def averaging_record(trainer: Any) -> dict[str, Any] | None:
    """What `--average_last_k` averaged in this run (ingredient.json `train.averaged`), or None."""
    found = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TrajectoryAveragingCallback)]
    return found[0].record if found else None


def train_model(
    context: SweepContext,
    model: Any,
    args: TrainingArguments,
    options: FineTuneArguments,
    resume_from: str | None = None,
) -> tuple[Any, Any]:
    trainer = make_trainer(context, args, options, model=model)
    output = trainer.train(resume_from_checkpoint=resume_from)
    return trainer, output


def score_model(context: SweepContext, model: Any, batch_size: int) -> dict[str, dict[str, float]]:
    """Metrics (with `primary` and `loss`) on heldout and every test split: what ingredient.json records.

    Uses the merge's Scorer with the family-aware `class_logits`, so a sweep's recorded scores and a
    merge's re-scoring of the same folder are the same computation.
    """
    return score_splits(context, model, batch_size, keep_logits=False)[0]


def score_splits(
    context: SweepContext, model: Any, batch_size: int, *, keep_logits: bool = True
) -> tuple[dict[str, dict[str, float]], Any]:
    """(`score_model`'s metrics, the logits as `hf_soup.stored_logits.StoredLogits` or None): stored
    beside the weights, they spare the merge this very computation."""
    from hf_soup.scoring import Scorer
    from hf_soup.stored_logits import StoredLogits

    names = ["heldout", *context.task.test_split_names]
    scorer = Scorer(
        model,
        context.task,
        {name: context.features[name] for name in names},
        batch_size=batch_size,
        pad_token_id=context.tokenizer.pad_token_id or 0,
        device=next(model.parameters()).device,
        logits_fn=models.class_logits,
    )
    results = {name: scorer.score(name) for name in names}
    logits = {name: result.logits for name, result in results.items()}
    stored = StoredLogits.from_scorer(scorer, logits, context.data_args.max_seq_length) if keep_logits else None
    return {name: result.metrics for name, result in results.items()}, stored


def write_model_folder(
    dest: Path, model: Any, tokenizer: Any, record: dict | None, extra: dict | None = None, logits: Any = None
):
    """`logits`: a `hf_soup.stored_logits.StoredLogits` of these weights, written beside them."""
    with atomic_dir(dest) as tmp, quiet_transformers():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if logits is not None:
            logits.write(tmp)  # after the weights: it records their sha256
        if record is not None:
            write_ingredient(tmp, record)
        for name, payload in (extra or {}).items():
            write_json_atomic(tmp / name, payload)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
