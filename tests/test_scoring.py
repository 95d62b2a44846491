"""Scoring (length-sorted batches, in-place weight swaps) and the soft-vote ensemble."""

import numpy as np
import pytest
import torch
from soup_factory import RTE, tiny_classifier

from hf_soup.ensemble import ensemble_logits, ensemble_metrics
from hf_soup.errors import SoupError
from hf_soup.scoring import Scorer


@pytest.fixture(scope="module")
def tokenized(tokenizer_dir):
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    texts = ["the cat", "a dog sat on the mat today", "cat", "the mat is not a dog at all, no", "sat"] * 3
    encoded = tokenizer(texts, truncation=True, max_length=32)
    rows = {**encoded, "label": [i % 2 for i in range(len(texts))]}
    rows["length"] = [len(ids) for ids in encoded["input_ids"]]
    return tokenizer, Dataset.from_dict(rows)


def test_scores_match_one_example_at_a_time_in_original_order(tokenized):
    tokenizer, dataset = tokenized
    model = tiny_classifier(len(tokenizer), noise_seed=1).eval()
    scorer = Scorer(model, RTE, {"heldout": dataset}, batch_size=4, pad_token_id=tokenizer.pad_token_id)
    result = scorer.score("heldout")
    with torch.inference_mode():
        expected = np.concatenate(
            [
                model(
                    **{k: torch.tensor([dataset[i][k]]) for k in ("input_ids", "token_type_ids", "attention_mask")}
                ).logits.numpy()
                for i in range(len(dataset))
            ]
        )
    np.testing.assert_allclose(result.logits, expected, atol=1e-5)
    assert set(result.metrics) == {"accuracy", "primary", "loss"}


def test_a_token_budget_bounds_every_batch_and_changes_no_score(tokenized):
    tokenizer, dataset = tokenized
    model = tiny_classifier(len(tokenizer), noise_seed=1).eval()
    plain = Scorer(model, RTE, {"heldout": dataset}, batch_size=8, pad_token_id=tokenizer.pad_token_id)
    bounded = Scorer(model, RTE, {"heldout": dataset}, batch_size=8, max_batch_tokens=32, pad_token_id=0)
    shapes = [tuple(batch["input_ids"].shape) for batch in bounded.batches("heldout")]
    assert all(rows * width <= 32 for rows, width in shapes) and sum(rows for rows, _ in shapes) == len(dataset)
    assert len(shapes) > len(plain.batches("heldout")) and max(rows for rows, _ in shapes) == 8  # short rows: full
    labels = bounded.batch_labels("heldout")  # aligned with the uneven batches (the learned soup's loss)
    assert [len(batch) for batch in labels] == [rows for rows, _ in shapes]
    order = np.argsort(-np.asarray(dataset["length"]), kind="stable")
    assert torch.equal(torch.cat(labels), torch.as_tensor(np.asarray(dataset["label"])[order]))
    np.testing.assert_allclose(bounded.score("heldout").logits, plain.score("heldout").logits, atol=1e-5)


def test_weights_are_swapped_in_place_into_one_model(tokenized):
    tokenizer, dataset = tokenized
    model = tiny_classifier(len(tokenizer), noise_seed=1)
    scorer = Scorer(model, RTE, {"heldout": dataset}, pad_token_id=tokenizer.pad_token_id)
    pointer = model.classifier.weight.data_ptr()
    other = tiny_classifier(len(tokenizer), noise_seed=2)
    swapped = scorer.score_state(other.state_dict(), "heldout").logits
    assert model.classifier.weight.data_ptr() == pointer and torch.equal(
        model.classifier.weight, other.classifier.weight
    )
    with torch.inference_mode():
        direct = Scorer(other, RTE, {"heldout": dataset}, pad_token_id=tokenizer.pad_token_id).logits("heldout")
    np.testing.assert_allclose(swapped, direct, atol=1e-6)
    state = dict(other.state_dict())
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(SoupError, match=r"unexpected tensor 'extra\.weight'"):
        scorer.load_state(state)
    state = dict(other.state_dict())
    state.pop("classifier.bias")
    with pytest.raises(SoupError, match=r"missing tensor 'classifier\.bias'"):
        scorer.load_state(state)


def test_ensemble_is_the_mean_of_probabilities():
    a = np.log(np.array([[0.9, 0.1], [0.2, 0.8]]))
    b = np.log(np.array([[0.3, 0.7], [0.4, 0.6]]))
    np.testing.assert_allclose(np.exp(ensemble_logits([a, b])), [[0.6, 0.4], [0.3, 0.7]])
    metrics = ensemble_metrics(RTE, [a, b], np.array([0, 1]))
    assert metrics["accuracy"] == 1.0 and metrics["loss"] == pytest.approx(-(np.log(0.6) + np.log(0.7)) / 2)
    np.testing.assert_allclose(ensemble_logits([np.array([[1.0]]), np.array([[3.0]])], is_regression=True), [[2.0]])


def test_batches_read_from_arrow_equal_the_python_lists_of_a_shuffled_selection(tokenized):
    """The flat (values, offsets) reading gives the very batches the row lists gave, also for a
    dataset whose rows are a shuffled selection (an indices mapping over the Arrow table)."""
    from hf_soup.scoring import _pad

    tokenizer, dataset = tokenized
    selected = dataset.shuffle(seed=3).select(range(0, len(dataset), 2))
    model = tiny_classifier(len(tokenizer))
    scorer = Scorer(model, RTE, {"heldout": selected}, batch_size=5, pad_token_id=0)
    prepared = scorer._prepare("heldout")
    rows = {name: list(selected[name]) for name in selected.column_names}
    for batch, start in zip(prepared.batches, range(0, len(selected), 5)):
        order = prepared.order[start : start + 5]
        assert torch.equal(batch["input_ids"], _pad([rows["input_ids"][i] for i in order], 0))
        assert torch.equal(batch["attention_mask"], _pad([rows["attention_mask"][i] for i in order], 0))
    assert np.array_equal(prepared.references, np.asarray(rows["label"]))
