import math

import numpy as np
import pytest
from transformers import EvalPrediction

from hf_soup.metrics import (
    compute_task_metrics,
    load_evaluate_metric,
    loss_from_logits,
    make_compute_metrics,
    metrics_from_logits,
)
from hf_soup.tasks import get_task


def test_accuracy_and_f1_hand_computed():
    # predictions 1,1,0,0,1 vs refs 1,0,0,1,1: TP=2 FP=1 FN=1 -> P=R=2/3, F1=2/3; accuracy 3/5
    result = compute_task_metrics(get_task("mrpc"), [1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["primary"] == pytest.approx((0.6 + 2 / 3) / 2)


def test_f1_is_zero_without_positive_predictions():
    result = compute_task_metrics(get_task("qqp"), [0, 0, 0, 0], [1, 0, 1, 0])
    assert result["f1"] == 0.0
    assert result["accuracy"] == 0.5


def test_matthews_hand_computed_and_zero_for_constant_predictions():
    task = get_task("cola")
    # TP=2 TN=1 FP=1 FN=0: (2*1 - 1*0) / sqrt(3*2*1*2) = 2/sqrt(12)
    assert compute_task_metrics(task, [1, 1, 1, 0], [1, 1, 0, 0])["matthews_correlation"] == pytest.approx(
        2 / math.sqrt(12)
    )
    constant = compute_task_metrics(task, [1, 1, 1, 1], [1, 0, 1, 0])
    assert constant["matthews_correlation"] == 0.0
    assert constant["primary"] == 0.0


def test_pearson_spearman_hand_computed_and_constant():
    task = get_task("stsb")
    refs = [1.0, 2.0, 3.0, 4.0]
    perfect = compute_task_metrics(task, [2.0, 4.0, 6.0, 8.0], refs)
    assert perfect["pearson"] == pytest.approx(1.0) and perfect["spearmanr"] == pytest.approx(1.0)
    # monotone but not linear: spearman 1, pearson < 1
    curved = compute_task_metrics(task, [1.0, 2.0, 3.0, 100.0], refs)
    assert curved["spearmanr"] == pytest.approx(1.0) and curved["pearson"] < 0.9
    assert compute_task_metrics(task, [3.0] * 4, refs)["pearson"] == 0.0


def test_compute_metrics_for_trainer_takes_logits():
    compute = make_compute_metrics(get_task("rte"))
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
    result = compute(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 1])))
    assert result["accuracy"] == pytest.approx(2 / 3)


def test_loss_is_mean_cross_entropy():
    logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    # p(label)=1/2 and 3/4 -> mean(-log) = (log 2 + log 4/3)/2
    expected = (math.log(2) + math.log(4 / 3)) / 2
    assert loss_from_logits(get_task("rte"), logits, np.array([0, 0])) == pytest.approx(expected)
    assert metrics_from_logits(get_task("rte"), logits, np.array([0, 0]))["loss"] == pytest.approx(expected)


def test_empty_split_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        compute_task_metrics(get_task("rte"), [], [])


def test_evaluate_module_loads_offline_and_matches():
    metric = load_evaluate_metric(get_task("mrpc"))
    metric.add_batch(predictions=[1, 1, 0], references=[1, 0, 0])
    metric.add_batch(predictions=[0, 1], references=[1, 1])
    expected = compute_task_metrics(get_task("mrpc"), [1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    assert metric.compute() == pytest.approx(expected)


def test_macro_f1_and_spearman_for_user_tasks():
    from hf_soup.tasks import make_task

    task = make_task("t", ("a",), (0, 1, 2), metrics=["macro_f1", "accuracy"])
    # class 0: P=1 R=1/2 F1=2/3; class 1: P=1/2 R=1 F1=2/3; class 2: P=R=1 F1=1 -> macro 7/9
    result = compute_task_metrics(task, [0, 1, 1, 2], [0, 0, 1, 2])
    assert result["macro_f1"] == pytest.approx(7 / 9) and result["primary"] == result["macro_f1"]
    regression = make_task("t", ("a",), None, metrics=["spearman"])
    assert compute_task_metrics(regression, [1.0, 2.0, 3.0, 100.0], [1.0, 2.0, 3.0, 4.0]) == {
        "spearman": pytest.approx(1.0),
        "primary": pytest.approx(1.0),
    }


def test_evaluate_module_for_a_user_task():
    from hf_soup.tasks import make_task

    task = make_task("tickets", ("a",), ("bug", "billing", "other"))
    metric = load_evaluate_metric(task)
    metric.add_batch(predictions=[0, 1, 2, 2], references=[0, 1, 1, 2])
    assert metric.compute() == pytest.approx(compute_task_metrics(task, [0, 1, 2, 2], [0, 1, 1, 2]))
