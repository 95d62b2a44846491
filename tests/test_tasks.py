import pytest

from hf_soup.errors import SoupError
from hf_soup.tasks import PRESETS, Task, get_task, make_task


def test_registry_has_all_nine_glue_tasks():
    assert set(PRESETS) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}


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
    with pytest.raises(SoupError, match=r"unknown task .glu.*cola, sst2, mrpc"):
        get_task("glu")


def test_presets_round_trip_through_json_as_the_preset_itself():
    import json

    for task in PRESETS.values():
        back = Task.from_dict(json.loads(json.dumps(task.to_dict())))
        assert back is task and back.tsv is not None  # a recorded preset reads its TSV layout again


def test_user_task_round_trip_keeps_values_names_and_prompt():
    import json

    task = make_task("AG News!", ("title", "description"), (1, 2, 3, 4))
    assert task.name == "AG News!" and task.t5_prompt == "ag_news"
    assert task.id2label == {0: "1", 1: "2", 2: "3", 3: "4"} and task.label_lookup() == {1: 0, 2: 1, 3: 2, 4: 3}
    record = json.loads(json.dumps(task.to_dict()))
    assert record["label_values"] == [1, 2, 3, 4] and record["is_pair"] and not record["is_regression"]
    back = Task.from_dict(record)
    assert back == task and not back.is_preset and back.label_values == (1, 2, 3, 4)
    with pytest.raises(SoupError, match="task: not a task description"):
        Task.from_dict({"name": "x"})


def test_defaults_and_limits_of_user_tasks():
    assert make_task("t", ("a",), ("no", "yes")).metrics == ("accuracy", "f1")
    assert make_task("t", ("a",), (0, 1, 2)).metrics == ("accuracy", "macro_f1")
    regression = make_task("t", ("a", "b"), None)
    assert regression.is_regression and regression.metrics == ("pearson", "spearman")
    assert regression.primary_metric == "pearson" and regression.num_labels == 1
    with pytest.raises(SoupError, match="give one text column or a pair"):
        make_task("t", ("a", "b", "c"), (0, 1))
    with pytest.raises(SoupError, match="names a metric twice"):
        make_task("t", ("a",), (0, 1), metrics=["accuracy", "accuracy"])
    # Presets: raw ints are ids and raw strings names; a user's task accepts only its own values.
    assert get_task("rte").label_lookup() == {"entailment": 0, "not_entailment": 1, 0: 0, 1: 1}
    assert make_task("t", ("a",), ("b", "a")).label_lookup() == {"b": 0, "a": 1}


def test_test_split_names_follow_the_source_splits():
    assert get_task("rte").with_test_splits(["test", "validation_ood"]).test_split_names == ("test", "test_ood")


def test_a_task_named_after_its_data_drops_split_words_and_release_numbers():
    from hf_soup.tasks import task_name_from_data

    assert task_name_from_data("snli_1.0_dev") == "snli"
    assert task_name_from_data("multinli_1.0_train") == "multinli"
    assert task_name_from_data("imdb-v2") == "imdb"
    assert task_name_from_data("cnn_dailymail_3.0.0") == "cnn_dailymail"
    assert task_name_from_data("sst2") == "sst2" and task_name_from_data("ag_news") == "ag_news"
    assert task_name_from_data("train") == "train"  # nothing else left: the folder names it (data.splits)
