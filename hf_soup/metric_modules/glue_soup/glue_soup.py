"""hf_soup's task metrics as an `evaluate` module that loads offline from its path.

`evaluate.load(hf_soup.metrics.metric_module_path(), config_name="mrpc")` (a GLUE preset) or
`evaluate.load(path, config_name=task.name, task=task.to_dict())` (any task) returns a normal
`EvaluationModule` (add_batch, compute, combine) whose maths is `hf_soup.metrics`, so results
match the rest of hf_soup exactly. evaluate copies this file into its cache and imports it from
there: keep one import per line and import hf_soup by absolute name.
"""

import datasets
import evaluate

from hf_soup import metrics as soup_metrics
from hf_soup import tasks as soup_tasks

_DESCRIPTION = "Task metrics (accuracy, F1, macro F1, Matthews, Pearson, Spearman) plus hf_soup's primary score."
_KWARGS_DESCRIPTION = """
Args:
    predictions: class ids (float scores for regression tasks).
    references: gold class ids (float scores for regression tasks).
Returns: the task's metrics and `primary`, the score hf_soup ranks by.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GlueSoup(evaluate.Metric):
    def __init__(self, task=None, **kwargs):
        self.task_record = task  # a Task.to_dict(); None: `config_name` names a GLUE preset
        super().__init__(**kwargs)

    def _task(self):
        if self.task_record is not None:
            return soup_tasks.Task.from_dict(self.task_record)
        return soup_tasks.get_task(self.config_name)

    def _info(self):
        task = self._task()
        dtype = "float32" if task.is_regression else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value(dtype), "references": datasets.Value(dtype)}),
        )

    def _compute(self, predictions, references):
        return soup_metrics.compute_task_metrics(self._task(), predictions, references)
