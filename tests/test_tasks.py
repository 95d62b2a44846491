import pytest

from hf_soup.errors import SoupError
from hf_soup.tasks import TASKS, get_task


def test_registry_has_all_nine_glue_tasks():
    assert set(TASKS) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}


@pytest.mark.parametrize(
    ("name", "labels"),
    [  # id order of the Hub's nyu-mll/glue ClassLabel features
        ("cola", ("unacceptable", "acceptable")),
        ("sst2", ("negative", "positive")),
        ("mrpc", ("not_equivalent", "equivalent")),
        ("qqp", ("not_duplicate", "duplicate")),
        ("mnli", ("entailment", "neutral", "contradiction")),
        ("qnli", ("entailment", "not_entailment")),
        ("rte", ("entailment", "not_entailment")),
        ("wnli", ("not_entailment", "entailment")),
    ],
)
def test_label_order_matches_hub(name, labels):
    task = get_task(name)
    assert task.label_names == labels
    assert task.num_labels == len(labels)
    assert task.label2id == {label: i for i, label in enumerate(labels)}


def test_stsb_is_regression_with_one_output():
    task = get_task("STS-B")
    assert task.is_regression and task.num_labels == 1
    assert task.primary_parts == ("pearson", "spearmanr")


def test_mnli_has_matched_and_mismatched_test_splits():
    task = get_task("mnli")
    assert task.validation_splits == ("validation_matched", "validation_mismatched")
    assert task.test_split_names == ("test", "test_mismatched")


def test_unknown_task_lists_known_ones():
    with pytest.raises(SoupError, match=r"unknown task 'glu'.*cola, sst2, mrpc"):
        get_task("glu")
