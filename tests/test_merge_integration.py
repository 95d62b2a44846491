"""Real MiniLM, real RTE rows: a greedy soup of three short fine-tunes, reloaded with from_pretrained.

The ingredients come from a plain `transformers.Trainer` with `IngredientExportCallback` — the
path any user script takes — with one head initialisation (seed fixed before `from_pretrained`)
and different learning rates and run seeds.
"""

import json

import numpy as np
import pytest
import torch

from hf_soup.data import DataArguments, load_splits, tokenize_splits
from hf_soup.errors import cli_main
from hf_soup.merge import main
from hf_soup.metrics import make_compute_metrics, metrics_from_logits

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HEAD_SEED = 42
MAX_LENGTH = 64


@pytest.fixture(scope="session")
def rte_data_args(glue_dir):
    return DataArguments(
        task="rte",
        glue_dir=str(glue_dir),
        heldout_size=96,
        max_train_samples=96,
        max_test_samples=96,
        max_seq_length=MAX_LENGTH,
    )


@pytest.fixture(scope="session")
def minilm_sweep(tmp_path_factory, minilm_dir, rte_data_args):
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from hf_soup.callbacks import IngredientExportCallback

    splits = load_splits(rte_data_args)
    task = splits.task
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    tokenized = tokenize_splits(splits, tokenizer, MAX_LENGTH)
    root = tmp_path_factory.mktemp("minilm-sweep")
    for learning_rate, seed in ((1e-4, 0), (2e-4, 1), (3e-4, 2)):
        torch.manual_seed(HEAD_SEED)  # the same classifier head init for every ingredient
        model = AutoModelForSequenceClassification.from_pretrained(
            minilm_dir, num_labels=task.num_labels, id2label=task.id2label, label2id=task.label2id
        )
        run_id = f"lr{learning_rate:g}_seed{seed}"
        export = IngredientExportCallback(
            str(root / "runs" / run_id),
            splits=splits,  # task, split and data description: the merge needs no data flags
            base_model=str(minilm_dir),
            head_init_seed=HEAD_SEED,
            hyperparameters={"learning_rate": learning_rate, "max_seq_length": MAX_LENGTH},
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
            eval_dataset={"heldout": tokenized["heldout"], "test": tokenized["test"]},
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=make_compute_metrics(task),
            callbacks=[export],
        ).train()
    return root / "runs"


def _plain_heldout_metrics(folder, rte_data_args):
    """Score a soup folder the way a user would: from_pretrained, dataset order, default collator."""
    from torch.utils.data import DataLoader
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    splits = load_splits(rte_data_args)
    heldout = splits["heldout"]
    encoded = heldout.map(
        lambda b: tokenizer(b["sentence1"], b["sentence2"], truncation=True, max_length=MAX_LENGTH),
        batched=True,
        remove_columns=["sentence1", "sentence2", "idx", "label"],
    )
    loader = DataLoader(encoded, batch_size=32, collate_fn=DataCollatorWithPadding(tokenizer))
    with torch.inference_mode():
        logits = np.concatenate([model(**batch).logits.numpy() for batch in loader])
    return metrics_from_logits(splits.task, logits, np.asarray(list(heldout["label"])))


def test_greedy_soup_of_minilm_reloads_with_its_recorded_score(minilm_sweep, rte_data_args, tmp_path, capsys):
    output = tmp_path / "soups" / "rte-greedy"
    code = cli_main(main, ["--ingredients", str(minilm_sweep), "--recipe", "greedy", "--output", str(output)])
    assert code == 0, capsys.readouterr().err
    soup = json.loads((output / "soup.json").read_text())
    assert len(soup["ingredients"]) == 3 and len(soup["greedy_trace"]) == 3
    assert soup["heldout_disjoint"] is True and soup["data"]["task"]["name"] == "rte"
    recorded = soup["results"]["soup"]["heldout"]
    reproduced = _plain_heldout_metrics(output, rte_data_args)
    assert reproduced["accuracy"] == recorded["accuracy"]
    assert reproduced["loss"] == pytest.approx(recorded["loss"], abs=1e-4)
    # every ingredient's recorded score is what its own folder gives, too (same scorer, same split)
    best = soup["ingredients"][0]
    assert _plain_heldout_metrics(best["path"], rte_data_args)["accuracy"] == best["heldout"]["accuracy"]
    # greedy keeps at least the best single and never scores below it on held-out
    assert soup["results"]["greedy"]["heldout"]["primary"] >= soup["results"]["best_single"]["heldout"]["primary"]
