"""Real MiniLM, real RTE rows: a greedy soup of three short fine-tunes, reloaded with from_pretrained.

The ingredients come from a plain `transformers.Trainer` with `IngredientExportCallback`, the path
any user script takes (`trainer_ingredients`).
"""

import json

import numpy as np
import pytest
import torch

from hf_soup.data import DataArguments, load_splits
from hf_soup.errors import cli_main
from hf_soup.merge import main
from hf_soup.metrics import metrics_from_logits

from trainer_ingredients import train_callback_ingredients  # isort: skip

pytestmark = [pytest.mark.integration, pytest.mark.slow]
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
    return train_callback_ingredients(
        tmp_path_factory.mktemp("minilm-sweep"), minilm_dir, load_splits(rte_data_args), MAX_LENGTH, ("heldout", "test")
    )


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
