"""Real ingredients the way a user's own script makes them: a plain `transformers.Trainer` with
`IngredientExportCallback`, one head initialisation (seed fixed before `from_pretrained`) and
different learning rates and run seeds. Shared by the real-weight merge tests."""

from __future__ import annotations

from pathlib import Path

import torch

from hf_soup.data import TaskSplits, tokenize_splits
from hf_soup.metrics import make_compute_metrics

HEAD_SEED = 42
POINTS = ((1e-4, 0), (2e-4, 1), (3e-4, 2))  # (learning rate, run seed) per ingredient


def train_callback_ingredients(
    root: Path, model_dir: Path, splits: TaskSplits, max_length: int, eval_splits: tuple[str, ...] = ("heldout",)
) -> Path:
    """Fine-tune one ingredient per `POINTS` row for one epoch; return the folder of ingredient folders."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from hf_soup.callbacks import IngredientExportCallback

    task = splits.task
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenized = tokenize_splits(splits, tokenizer, max_length)
    for learning_rate, seed in POINTS:
        torch.manual_seed(HEAD_SEED)  # the same classifier head init for every ingredient
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=task.num_labels, id2label=task.id2label, label2id=task.label2id
        )
        run_id = f"lr{learning_rate:g}_seed{seed}"
        export = IngredientExportCallback(
            str(root / "runs" / run_id),
            splits=splits,  # task, split and data description: the merge needs no data flags
            base_model=str(model_dir),
            head_init_seed=HEAD_SEED,
            hyperparameters={"learning_rate": learning_rate, "max_seq_length": max_length},
        )
        args = TrainingArguments(
            output_dir=str(root / "trainer" / run_id),
            num_train_epochs=1,
            per_device_train_batch_size=16,
            per_device_eval_batch_size=64,
            learning_rate=learning_rate,
            seed=seed,
            eval_strategy="epoch",
            save_strategy="no",
            use_cpu=True,
            report_to="none",
            disable_tqdm=True,
        )
        Trainer(
            model=model,
            args=args,
            train_dataset=tokenized["train"],
            eval_dataset={name: tokenized[name] for name in eval_splits},
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=make_compute_metrics(task),
            callbacks=[export],
        ).train()
    return root / "runs"
