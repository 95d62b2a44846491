"""Trainer callbacks that bring soups into ANY `transformers.Trainer` script, not just our sweep.

    from hf_soup.callbacks import CheckpointAveragingCallback, IngredientExportCallback, TrajectoryAveragingCallback

    # 1. average the last 3 checkpoints of this run into <output_dir>/averaged-last-3 at train end
    #    (needs save_strategy != "no" and save_total_limit >= 3)
    trainer = Trainer(..., callbacks=[CheckpointAveragingCallback(last_n=3)])

    # 2. end the run on the float64 average of its last 3 trajectory points (no Trainer checkpoints)
    trainer = Trainer(..., callbacks=[TrajectoryAveragingCallback(3, work_dir="tmp/average")])

    # 3. export this run as a soup ingredient (weights + config + tokenizer + ingredient.json),
    #    ready for `python -m hf_soup.merge --ingredients my_runs/ ...`
    splits = hf_soup.data.load_splits(DataArguments(train_file="tickets.csv"))   # or task="rte", ...
    export = IngredientExportCallback(
        "my_runs/lr2e-5-seed1", splits=splits, base_model="sentence-transformers/all-MiniLM-L6-v2",
        head_init_seed=42, seed=1, hyperparameters={"learning_rate": 2e-5},
    )
    trainer = Trainer(..., eval_dataset={"heldout": ..., "test": ...},
                      compute_metrics=make_compute_metrics(task), callbacks=[export])

`splits=` records the task and the data description (ingredient.json `task`, `split`, `data`), so
the merge rebuilds the same held-out split with no data flags and knows it was not trained on.
With it, the export also scores held-out and test as the merge's scorer would and stores the logits
in `logits.safetensors` beside the weights (`store_logits=False`: not), so the merge runs no forward
pass for this ingredient (hf_soup.stored_logits).
Without it (`task="rte"` only) the merge must be given the data, and cannot show that its held-out
rows were not training rows (soup.json `heldout_disjoint: false`).

The export needs held-out metrics (the merge ranks ingredients by them): it takes the latest
`eval_heldout_*` metrics (or `eval_*` with a single eval dataset), and `eval_test_*` as test, and
only metrics measured on the weights it saves (each evaluation notes a fingerprint of the weights
it scored). It exports at train end when the last evaluation scored the final weights, otherwise at
the first `trainer.evaluate()` after training; the evaluations of the same weights that follow (the
test pass after held-out) are added to its ingredient.json. A callback that replaces the weights at
train end (`CheckpointAveragingCallback(load_into_model=True)`, `TrajectoryAveragingCallback`) must
be listed before the export, which then waits for `trainer.evaluate()` of the average; listed after
it, the export would save the weights before averaging, so that order is refused at train begin.
Both callbacks write atomically (temp folder + rename) and check at train begin that their output
does not exist yet, so a run never ends in a refusal.
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback

from hf_soup.atomic import atomic_dir
from hf_soup.checkpoints import Checkpoint, check_compatible, find_trainer_checkpoints
from hf_soup.errors import SoupError
from hf_soup.ingredient import build_ingredient, weights_sha256, write_ingredient
from hf_soup.metrics import PRIMARY, primary_score
from hf_soup.model_writer import copy_model_files, save_state
from hf_soup.quiet import quiet_transformers
from hf_soup.recipes.uniform import average_checkpoints
from hf_soup.soup_file import build_soup, write_soup
from hf_soup.tasks import Task, get_task
from hf_soup.train_rows import KEY as TRAIN_ROWS_KEY
from hf_soup.train_rows import check_train_rows

if TYPE_CHECKING:
    from hf_soup.data import TaskSplits

logger = logging.getLogger(__name__)
_RUNTIME_KEYS = ("runtime", "samples_per_second", "steps_per_second", "epoch")


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise SoupError(f"{path}: already exists (refusing to overwrite; pass overwrite=True)")


# model -> (the TrainerState of the train() call, the export callback that began in it): callbacks run
# in list order, so a weights-replacing callback that finds an entry for its own train() is listed later.
_EXPORTS_BEGUN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _note_export_begun(model: Any, state: Any, callback: Any) -> None:
    if model is not None:
        _EXPORTS_BEGUN[model] = (weakref.ref(state), type(callback).__name__)


def _refuse_after_export(model: Any, state: Any, who: str) -> None:
    """A callback that replaces the weights at train end, listed after an export of the same run: the
    export would save the weights before the replacement (and their scores), so refuse before training."""
    begun = _EXPORTS_BEGUN.get(model) if model is not None else None
    if begun is not None and begun[0]() is state:
        raise SoupError(
            f"{who} replaces the model's weights at train end but is listed after {begun[1]}, which would "
            f"export the weights before that; list it before {begun[1]} in callbacks=[...] (the export then "
            "waits for trainer.evaluate() of the new weights)"
        )


def weights_fingerprint(model: Any) -> tuple[float, ...]:
    """Sum and sum of squares (float64) of every floating tensor: which weights an evaluation scored.
    Any change of the weights (an average, a further step) changes it; one pass over the model."""
    if model is None:
        return ()
    with torch.no_grad():
        parts = [
            torch.stack((tensor.double().sum(), tensor.double().square().sum()))
            for tensor in model.state_dict().values()
            if tensor.is_floating_point()
        ]
        return tuple(torch.cat(parts).tolist()) if parts else ()


class CheckpointAveragingCallback(TrainerCallback):
    """At train end, average the last `last_n` `checkpoint-*` of the run (float64) into a model folder.

    The folder (default `<output_dir>/averaged-last-<n>`) loads with `from_pretrained` and carries
    a soup.json with recipe "average-last". `load_into_model=True` also copies the average into
    the trainer's model, so a following `trainer.evaluate()`/`save_model()` uses it.
    """

    def __init__(
        self, last_n: int = 5, output_dir: str | None = None, *, overwrite: bool = False, load_into_model: bool = False
    ):
        if last_n < 1:
            raise ValueError("last_n must be at least 1")
        self.last_n = last_n
        self.output_dir = output_dir
        self.overwrite = overwrite
        self.load_into_model = load_into_model
        self.averaged_dir: Path | None = None

    def _destination(self, args) -> Path:
        return Path(self.output_dir or Path(args.output_dir) / f"averaged-last-{self.last_n}")

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.load_into_model:
            _refuse_after_export(model, state, "CheckpointAveragingCallback(load_into_model=True)")
        if args.save_strategy == "no":
            logger.warning("CheckpointAveragingCallback: save_strategy='no' saves no checkpoints to average")
        if state.is_world_process_zero:
            _refuse_existing(self._destination(args), self.overwrite)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        found = find_trainer_checkpoints(args.output_dir)
        if not found:
            logger.warning("CheckpointAveragingCallback: no checkpoint-* in %s; nothing averaged", args.output_dir)
            return
        chosen = found[-self.last_n :]
        if len(chosen) < self.last_n:
            logger.warning(
                "CheckpointAveragingCallback: only %d checkpoints kept (save_total_limit?), averaging those",
                len(chosen),
            )
        sources = [Checkpoint(path) for path in chosen]
        check_compatible(sources)
        averaged = average_checkpoints(sources)
        destination = self._destination(args)
        with atomic_dir(destination, overwrite=self.overwrite) as folder:
            save_state(averaged, folder)
            copy_model_files(chosen[-1], folder)
            rows = [{"name": p.name, "path": str(p), "kept": True, "weight": 1 / len(chosen)} for p in chosen]
            write_soup(
                folder,
                build_soup(name=destination.name, recipe="average-last", task=None, ingredients=rows, results={}),
            )
        if self.load_into_model and model is not None:
            targets = model.state_dict()
            with torch.no_grad():
                for name, tensor in averaged.items():
                    targets[name].copy_(tensor)
        self.averaged_dir = destination
        logger.info("CheckpointAveragingCallback: averaged %s into %s", [p.name for p in chosen], destination)


class TrajectoryAveragingCallback(TrainerCallback):
    """Replace the final weights by the float64 average of the last `last_k` points of the run's trajectory.

    Why: an average of nearby points of one run sits nearer the centre of its basin than any one
    of them (SWA, Izmailov et al. 2018; checkpoint averaging), and such flatter ingredients soup
    better. The sweep adds it for `--average_last_k K` (no Trainer checkpoints needed): snapshots
    are taken at steps T, T − d, …, T − (K − 1)·d of a T-step run (d = `every`, default T // (2K):
    spread over the last half of training), saved weights-only (safetensors) under
    `<work_dir>/step-<n>/`, and averaged at train end with `hf_soup.recipes.uniform.average_checkpoints`
    (streamed, float64), into the trainer's model in place. `record` says what was averaged.
    """

    def __init__(self, last_k: int, work_dir: str | Path, every: int = 0):
        if last_k < 1 or every < 0:
            raise ValueError("last_k must be >= 1 and every >= 0")
        self.last_k, self.every, self.work_dir = last_k, every, Path(work_dir)
        self.steps: list[int] = []
        self.record: dict[str, Any] | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        _refuse_after_export(model, state, "TrajectoryAveragingCallback")
        total = int(state.max_steps)
        every = self.every or max(1, total // (2 * self.last_k))
        self.every = every
        self.steps = sorted(total - i * every for i in range(self.last_k) if total - i * every > 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps and state.is_world_process_zero:
            snapshot = self.work_dir / f"step-{state.global_step}"
            with atomic_dir(snapshot, overwrite=True) as folder, quiet_transformers():
                model.save_pretrained(folder)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        done = [step for step in self.steps if (self.work_dir / f"step-{step}").is_dir()]
        if state.global_step not in done:  # stopped before the planned end: nothing to average
            logger.warning("TrajectoryAveragingCallback: the run stopped at step %d; not averaged", state.global_step)
            return
        sources = [Checkpoint(self.work_dir / f"step-{step}") for step in done]
        averaged = average_checkpoints(sources)
        targets = model.state_dict()
        with torch.no_grad():
            for name, tensor in averaged.items():
                targets[name].copy_(tensor)
        self.record = {"last_k": len(done), "every": self.every, "steps": done}


def check_export_labels(model: Any, task: Task) -> None:
    """The model's label names must be the task's: a merge refuses ingredients whose `id2label`
    differs, and finding out there (after training) is late. Names both maps."""
    config = getattr(model, "config", None)
    if config is None or task.is_regression:
        return
    found = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if found != task.id2label:
        raise SoupError(
            f"IngredientExportCallback: the model's id2label {found} is not the task's {task.id2label}; "
            "load it with from_pretrained(..., num_labels=task.num_labels, id2label=task.id2label, "
            "label2id=task.label2id); nothing exported"
        )


class IngredientExportCallback(TrainerCallback):
    """Export the trained model as a soup ingredient folder (see docs/FORMATS.md, ingredient.json)."""

    def __init__(
        self,
        output_dir: str,
        *,
        task: str | Task | None = None,
        base_model: str,
        head_init_seed: int,
        seed: int | None = None,
        hyperparameters: dict[str, Any] | None = None,
        split: dict[str, Any] | None = None,
        splits: TaskSplits | None = None,
        run_id: str | None = None,
        model_family: str = "encoder",
        base_model_revision: str | None = None,
        sweep_id: str | None = None,
        command: str | None = None,
        overwrite: bool = False,
        store_logits: bool = True,
        max_seq_length: int | None = None,
    ):
        self.output_dir = Path(output_dir)
        # With splits= (the data is known), the export also scores held-out and test as the merge would
        # and stores the logits beside the weights: the merge then runs no forward pass for this ingredient.
        self.splits = splits if store_logits else None
        self.max_seq_length = (
            max_seq_length
            or (hyperparameters or {}).get("max_seq_length")
            or (splits.arguments.get("max_seq_length") if splits is not None else None)
        )
        task = task if task is not None else (splits.task if splits is not None else None)
        if task is None:
            raise ValueError("IngredientExportCallback: pass splits= (hf_soup.data.load_splits) or task=")
        self.task = task if isinstance(task, Task) else get_task(task)
        if splits is not None and split is None:
            split = splits.describe()
        self.fields = {
            "run_id": run_id or self.output_dir.name,
            "sweep_id": sweep_id,
            "task": self.task.name,
            "primary_metric": self.task.primary_metric,
            "base_model": {
                "name_or_path": base_model,
                "revision": base_model_revision,
                "weights_sha256": weights_sha256(base_model),
            },
            "model_family": model_family,
            "head_init_seed": head_init_seed,
            "hyperparameters": dict(hyperparameters or {}),
            "split": dict(split or {}),
            "command": command,
        }
        if splits is not None:
            self.fields["data"] = splits.description()
        self._splits = splits
        self.seed = seed
        self.overwrite = overwrite
        self.exported: Path | None = None
        self._reset_run()

    def _reset_run(self) -> None:
        """Forget the previous train() call's metrics and export (a callback may serve several runs)."""
        # fingerprint of the weights an evaluation scored -> {split: metrics}: the export takes the scores
        # of the weights it saves (the last evaluation's, or an earlier one's after load_best_model_at_end)
        self.scores: dict[tuple[float, ...], dict[str, dict[str, float]]] = {}
        self._pending = False
        self._record: dict[str, Any] | None = None  # what was exported, and on which weights
        self._exported_weights: tuple[float, ...] | None = None

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, processing_class=None, **kwargs):
        _note_export_begun(model, state, self)
        if state.is_world_process_zero:
            _refuse_existing(self.output_dir, self.overwrite)
        if self._splits is not None:  # held-out is disjoint only if the Trainer trains on splits["train"]
            dataset = getattr(train_dataloader, "dataset", None)
            self.fields["split"][TRAIN_ROWS_KEY] = check_train_rows(dataset, self._splits, processing_class)
            if not self.fields["split"][TRAIN_ROWS_KEY]["verified"]:
                logger.warning("IngredientExportCallback: %s", self.fields["split"][TRAIN_ROWS_KEY]["reason"])

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        weights = weights_fingerprint(model)
        for key, value in (metrics or {}).items():
            if not key.startswith("eval_") or not isinstance(value, (int, float)):
                continue
            name = key.removeprefix("eval_")
            split = "heldout"
            for prefix in ("heldout_", "test_"):
                if name.startswith(prefix):
                    split, name = prefix[:-1], name.removeprefix(prefix)
            if name not in _RUNTIME_KEYS:
                self.scores.setdefault(weights, {}).setdefault(split, {})[name] = float(value)
        if self._record is not None and weights == self._exported_weights:
            self._add_metrics(state)  # e.g. the test pass that follows held-out in trainer.evaluate()
        elif self._pending and "heldout" in self.scores.get(weights, {}):
            self._export(args, state, model=model, **kwargs)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._pending = True
        if "heldout" in self.scores.get(weights_fingerprint(model), {}):
            self._export(args, state, model=model, **kwargs)
        elif any("heldout" in scored for scored in self.scores.values()):
            logger.warning(
                "IngredientExportCallback: the weights changed after the last evaluation (a callback listed before "
                "this one averaged them?); the ingredient is exported at the next trainer.evaluate(), with the "
                "scores of the weights it saves"
            )
        else:
            logger.warning(
                "IngredientExportCallback: no held-out metrics yet; the ingredient is exported at the next "
                "trainer.evaluate() (use eval_dataset={'heldout': ..., 'test': ...})"
            )

    def _current_metrics(self, weights: tuple[float, ...]) -> dict[str, dict[str, float]]:
        """The splits scored on `weights`, each completed with its primary score."""
        return {split: self._complete(values) for split, values in self.scores.get(weights, {}).items()}

    def _add_metrics(self, state) -> None:
        """Rewrite the exported ingredient.json with every split scored since on the same weights."""
        if not state.is_world_process_zero or self.exported is None:
            return
        metrics = self._current_metrics(self._exported_weights)
        if metrics != self._record["metrics"]:
            self._record = {**self._record, "metrics": metrics}
            write_ingredient(self.exported, self._record)

    def _complete(self, metrics: dict[str, float]) -> dict[str, float]:
        if PRIMARY not in metrics and all(name in metrics for name in self.task.primary_parts):
            metrics = {**metrics, PRIMARY: primary_score(self.task, metrics)}
        return metrics

    def _export(self, args, state, model=None, processing_class=None, **kwargs) -> None:
        self._pending = False
        if not state.is_world_process_zero:
            return
        weights = weights_fingerprint(model)
        metrics = self._current_metrics(weights)
        if PRIMARY not in metrics.get("heldout", {}):
            # An error, not a warning: a run that exports nothing and exits 0 looks like a success.
            wanted = " and ".join(repr(name) for name in self.task.primary_parts) or repr(self.task.primary_metric)
            found = ", ".join(sorted(metrics.get("heldout", {}))) or "none"
            raise SoupError(
                f"IngredientExportCallback: the held-out metrics ({found}) lack {wanted}, the primary metric of "
                f"task {self.task.name!r}; pass compute_metrics=hf_soup.metrics.make_compute_metrics(task) or "
                "name your metric so; nothing exported"
            )
        check_export_labels(model, self.task)
        seed = self.seed if self.seed is not None else args.seed
        record = build_ingredient(
            **self.fields,
            seed=seed,
            metrics=metrics,
            train={
                "steps": state.global_step,
                "device": str(args.device),
                "num_processes": args.world_size,
                "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
            },
        )
        with atomic_dir(self.output_dir, overwrite=self.overwrite) as folder, quiet_transformers():
            model.save_pretrained(folder)
            if processing_class is not None:
                processing_class.save_pretrained(folder)
            if self.splits is not None and processing_class is not None:
                from hf_soup.stored_logits import DEFAULT_MAX_LENGTH, score_for_export

                length = int(self.max_seq_length or DEFAULT_MAX_LENGTH)
                batch = args.per_device_eval_batch_size
                score_for_export(model, processing_class, self.splits, length, batch).write(folder)
            write_ingredient(folder, record)
        self.exported = self.output_dir
        self._record, self._exported_weights = record, weights
        logger.info("IngredientExportCallback: exported %s", self.output_dir)
