"""Soups from hyperparameter searches: every finished `Trainer.hyperparameter_search` trial is an ingredient.

    pip install 'hf_soup[hpo]'                                                      # optuna
    python -m hf_soup.hpo --config configs/rte.yaml --output_dir runs/rte-hpo \\
        --grid learning_rate=loguniform:1e-5:1e-4 num_train_epochs=2,3 seed=0,1 --n_trials 8
    python -m hf_soup.hpo ... --storage postgresql://me@db/hpo     # the same on every machine: one pool
    python -m hf_soup.merge --ingredients runs/rte-hpo --recipe greedy --output soups/rte-hpo

Your own Trainer script and search instead: add `TrialExportCallback(pool_dir, task=..., ...)` to
its callbacks and call `trainer.hyperparameter_search(...)` as usual (see the class).

Why: a search (Optuna, through the Trainer) fine-tunes many models and keeps one; each of them
could be a soup ingredient. Here every finished trial is written as one, in a folder the merge
reads like any sweep's, so the search's by-products are souped instead of thrown away.

How it stays a soup (the sweep's rules, by reusing the sweep's own code):
  * the same flags and config file as `python -m hf_soup.sweep` (`plan_sweep` checks them all;
    the data comes through `hf_soup.data`, held-out carved from train exactly as for the sweep;
    test is reported, never chosen on). The grid's axes are the search space: a list
    `a,b,c` is `suggest_categorical`, `uniform:` / `loguniform:` / `randint:` ranges are
    `suggest_float` / `suggest_int` (drawn floats rounded to 4 significant digits, as the random
    grid rounds them);
  * one `SoupTrainer` (the sweep's sampler, collator and held-out metrics) with a `model_init`
    that loads the base with the sweep's fixed head seed (`models.load_for_task`): every trial
    starts from the same head, which is what lets trials average;
  * each trial trains with the TrainingArguments the sweep builds for its values, is scored on
    held-out and test by the merge's scorer, and is written atomically to `<output_dir>/<run id>/`
    (ingredient.json: the trial's hyperparameters and seed, its scores, and a `search` block).
    The trial's value is its held-out primary score (maximised);
  * the run id is the grid's id of the trial's values, so the same hyperparameters and seed are
    one ingredient however many workers draw them: a repeat waits for the point's lock, then
    reuses the ingredient's score instead of training it again (also across sweeps and searches
    of the same folder);
  * the study lives in `--storage` (default: SQLite in `<output_dir>/.hpo/optuna.db`; on a
    cluster an RDBMS URL), named `hf_soup-<sweep id>` unless `--study_name`, loaded if it exists:
    workers on several machines add trials to one study and one pool.

transformers 5 facts this relies on (trainer.py, integrations/integration_utils.py): the search
needs `model_init`; `train(trial=...)` calls `model_init` after `set_seed(args.seed)`, then sets
the trial's values on `args`; Optuna's kwargs go to `optuna.create_study`. Under a data-parallel
launch only rank 0 samples and the others follow; that is refused here: run one search process
per GPU on a shared `--storage` instead (more trials at once, and each one a separate ingredient).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_soup.atomic import clear_temporaries_of, exclusive_lock
from hf_soup.callbacks import IngredientExportCallback, TrajectoryAveragingCallback
from hf_soup.errors import SoupError, cli_main
from hf_soup.ingredient import is_ingredient, read_ingredient
from hf_soup.redact import redact_text
from hf_soup.sweep import (
    ARGUMENT_TYPES,
    SWEEP_DEFAULTS,
    TRAINING_FIELDS,
    WORK_DIR,
    Range,
    RunConfig,
    SoupTrainer,
    SweepArguments,
    finish_sweep,
    free_memory,
    ingredient_record,
    load_model,
    make_trainer,
    parse_sweep_args,
    plan_sweep,
    prepare_start,
    run_id_for,
    run_options,
    training_arguments_for,
    write_model_folder,
    write_sweep_file,
)
from hf_soup.sweep.context import TRAJECTORY_DIR
from hf_soup.sweep.loop import keep_trajectory
from hf_soup.sweep.trainer import AVERAGE_DIR

logger = logging.getLogger(__name__)
STUDY_DIR = ".hpo"
OBJECTIVE = "heldout primary (maximised)"
STUDY_ATTEMPTS = 5  # concurrent workers creating one SQLite study can collide; each retries


@dataclass
class SearchArguments:
    """The search itself; every other flag is the sweep's (`python -m hf_soup.sweep --help`)."""

    n_trials: int = field(default=8, metadata={"help": "trials this process runs (every worker of a study its own)"})
    storage: str | None = field(
        default=None,
        metadata={
            "help": "Optuna storage URL shared by all workers: sqlite:///path.db, postgresql://…, mysql://… "
            "(default: sqlite:///<output_dir>/.hpo/optuna.db)"
        },
    )
    study_name: str | None = field(
        default=None, metadata={"help": "default: hf_soup-<sweep id> (the same settings join the same study)"}
    )
    sampler_seed: int | None = field(
        default=None, metadata={"help": "seed of Optuna's TPE sampler (default: random; give each worker its own)"}
    )
    timeout_s: float | None = field(default=None, metadata={"help": "stop starting trials after this many seconds"})


class SearchSpace:
    """The sweep's axes as Optuna suggestions, and a trial's values as a grid point (its run id)."""

    def __init__(self, axes: dict[str, Any]):
        self.axes = axes
        self.varying = tuple(k for k, axis in axes.items() if isinstance(axis, Range) or len(axis) > 1)

    def values(self, trial: Any) -> dict[str, Any]:
        """Suggest every axis (Optuna returns the same value for the same name within a trial)."""
        values = {}
        for key, axis in self.axes.items():
            if isinstance(axis, Range) and axis.kind == "randint":
                values[key] = trial.suggest_int(key, int(axis.low), int(axis.high))
            elif isinstance(axis, Range):
                values[key] = axis.rounded(trial.suggest_float(key, axis.low, axis.high, log=axis.kind == "loguniform"))
            else:
                values[key] = trial.suggest_categorical(key, axis) if len(axis) > 1 else axis[0]
        return values

    def run_for(self, trial: Any) -> RunConfig:
        values = self.values(trial)
        return RunConfig(trial.number, run_id_for(values), values, self.varying)


def _trial_trainer_class():
    """`TrialTrainer`, defined on first use: it subclasses the sweep's Trainer (torch, transformers)."""
    from transformers.trainer_pt_utils import LabelSmoother
    from transformers.trainer_utils import TrainOutput

    class TrialTrainer(SoupTrainer):
        """A SoupTrainer whose search trials each end as an ingredient folder (or reuse an existing one)."""

        def __init__(self, *args: Any, search: Search, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.search = search

        def train(self, resume_from_checkpoint=None, trial=None, **kwargs):
            if trial is None or self.hp_search_backend is None:  # a plain train() call
                return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs)
            context = self.search.context
            run = self.search.space.run_for(trial)
            dest = context.output_dir / run.run_id
            trial.set_user_attr("run_id", run.run_id)
            with exclusive_lock(dest, wait=True):  # a worker training the same point: wait, then reuse it
                if is_ingredient(dest):
                    Path(f"{dest}.lock").unlink(missing_ok=True)  # safe: every holder checks is_ingredient first
                    return self._repeat(trial, run, dest, TrainOutput(0, 0.0, {}))
                clear_temporaries_of(dest)
                started = time.perf_counter()
                # The TrainingArguments the sweep builds for these values (validated, precision, early
                # stopping); `train` then sets the trial's values on them again, a no-op.
                self.args = training_arguments_for(run, context)
                self.args.output_dir = str(context.output_dir / WORK_DIR)  # + hp_name: .work/<run id>
                options = run_options(run, context)
                work = context.output_dir / WORK_DIR / run.run_id
                self._average_into(work, options)
                factor = self.args.label_smoothing_factor  # read by Trainer.__init__ only
                self.label_smoother = LabelSmoother(epsilon=factor) if factor else None
                output = super().train(trial=trial, **kwargs)
                record, logits = ingredient_record(
                    run, context, self, output, options, started=started,
                    search={**self.search.describe(), "trial": trial.number},
                )  # fmt: skip
                model = self.accelerator.unwrap_model(self.model)
                write_model_folder(dest, model, context.tokenizer, record, logits=logits)
                if options.keep_trajectory:
                    keep_trajectory(work, context.output_dir / TRAJECTORY_DIR / run.run_id)
                shutil.rmtree(work, ignore_errors=True)
                Path(f"{dest}.lock").unlink(missing_ok=True)
            self.objective = record["metrics"]["heldout"]["primary"]
            print(f"trial {trial.number}: {run.run_id} heldout {self.objective:.4f} -> {dest}", flush=True)
            free_memory()
            return output

        def _average_into(self, work: Path, options: Any) -> None:
            """This trial's own trajectory averaging (its `average_last_k`, a fixed flag or a search axis),
            with its snapshots in its own work folder: never another trial's, never left behind."""
            for callback in list(self.callback_handler.callbacks):
                if isinstance(callback, TrajectoryAveragingCallback):
                    self.remove_callback(callback)
            if options.average_last_k > 1:
                self.add_callback(
                    TrajectoryAveragingCallback(options.average_last_k, work / AVERAGE_DIR, every=options.average_every)
                )

        def _repeat(self, trial: Any, run: RunConfig, dest: Path, output: Any) -> Any:
            self.objective = read_ingredient(dest)["metrics"]["heldout"]["primary"]
            trial.set_user_attr("repeat_of", run.run_id)
            print(
                f"trial {trial.number}: the same hyperparameters and seed as the ingredient {run.run_id}: "
                f"not trained again (its held-out {self.objective:.4f} is the trial's value)",
                flush=True,
            )
            return output

    return TrialTrainer


@dataclass
class Search:
    """One search process: the planned sweep, its space, and where the study lives."""

    sweep: Any
    space: SearchSpace
    storage_url: str
    study_name: str

    @property
    def context(self) -> Any:
        return self.sweep.context

    def describe(self) -> dict[str, Any]:
        """The `search` block of sweep.json and ingredient.json (credentials never written)."""
        return {
            "backend": "optuna",
            "study_name": self.study_name,
            "storage": _redact(self.storage_url),
            "objective": OBJECTIVE,
        }


# ----------------------------------------------------------------------------- your own Trainer's search


class TrialExportCallback(IngredientExportCallback):
    """Every finished trial of YOUR `trainer.hyperparameter_search(...)` as an ingredient of `pool_dir`.

        trainer = Trainer(
            model_init=lambda trial: load_for_task(base, "encoder", task, head_init_seed=42)[0],  # ONE head
            args=args, train_dataset=train, eval_dataset={"heldout": heldout, "test": test},
            compute_metrics=hf_soup.metrics.make_compute_metrics(task),
            callbacks=[TrialExportCallback("runs/search", task="rte", base_model=base, head_init_seed=42,
                                           split=splits.describe())],
        )
        trainer.hyperparameter_search(backend="optuna", n_trials=8, direction="maximize", hp_space=...,
                                      compute_objective=lambda m: m["eval_heldout_primary"],
                                      storage="sqlite:///search.db", study_name="rte", load_if_exists=True)
        # then: python -m hf_soup.merge --ingredients runs/search --recipe greedy --output soups/search

    A trial's folder is named like a grid point, from its hyperparameters and seed: the same values
    (a configuration two workers of one study both drew) are one ingredient, kept once. The
    held-out split must be carved from train (never the test set: the soup chooses on it), and
    `model_init` must draw the new head from one fixed seed (`load_for_task` does) — heads
    initialised differently do not average. Takes the export rules of `IngredientExportCallback`.
    """

    def __init__(self, pool_dir: str | os.PathLike, **fields: Any):
        super().__init__(str(Path(pool_dir) / "trial"), **fields)
        self.pool = Path(pool_dir)
        self.repeat = False

    def on_train_begin(self, args, state, control, **kwargs):
        values = {**(state.trial_params or {}), "seed": args.seed}
        run_id = run_id_for(values)
        self.output_dir = self.pool / run_id
        self.fields.update(run_id=run_id, hyperparameters=dict(state.trial_params or {}), grid_axes=list(values))
        self._reset_run()
        self.seed = args.seed
        self.repeat = is_ingredient(self.output_dir)
        if self.repeat:
            logger.info("TrialExportCallback: %s is already an ingredient; this trial is not exported", run_id)

    def _export(self, args, state, **kwargs) -> None:
        if self.repeat:
            self._pending = False
            return
        try:
            super()._export(args, state, **kwargs)
        except SoupError as err:  # another worker exported the same configuration first: keep theirs
            self._pending = False
            logger.warning("TrialExportCallback: %s; this trial is not exported", err)


# ----------------------------------------------------------------------------- running a search


def run_search(sweep: Any, arguments: SearchArguments) -> Any:
    """Run `arguments.n_trials` trials of `trainer.hyperparameter_search` on the planned sweep.

    Returns transformers' BestRun. Every finished trial is an ingredient in the sweep's output
    folder (or, for a repeat, already was one).
    """
    optuna = _import_optuna()

    context = sweep.context
    if not sweep.axes:
        raise SoupError("no search space: give at least one axis (--grid learning_rate=loguniform:1e-5:1e-4 ...)")
    default_db = (context.output_dir / STUDY_DIR / "optuna.db").absolute()
    search = Search(
        sweep=sweep,
        space=SearchSpace(sweep.axes),
        storage_url=arguments.storage or f"sqlite:///{default_db}",
        study_name=arguments.study_name or f"hf_soup-{context.sweep_id}",
    )
    check_search_space(sweep)
    storage = _open_study(optuna, search)  # an unreachable storage: nothing written yet
    context.output_dir.mkdir(parents=True, exist_ok=True)
    write_sweep_file(sweep, {"search": search.describe()})
    prepare_start(context)  # LP-FT / warm start, once, that every trial forks from

    def model_init(trial: Any = None) -> Any:
        """Called by the Trainer before each trial: the base (or shared start) with the sweep's fixed head."""
        return load_model(context, search.space.run_for(trial) if trial is not None else None)[0]

    base_args = training_arguments_for(None, context, work_name="hpo")
    base_args.output_dir = str(context.output_dir / WORK_DIR)  # each trial works in .work/<run id>
    trainer = make_trainer(
        context,
        base_args,
        context.finetune,
        trainer_class=_trial_trainer_class(),
        model_init=model_init,
        search=search,
    )
    sampler = optuna.samplers.TPESampler(seed=arguments.sampler_seed)
    print(
        f"search {search.study_name} ({_redact(search.storage_url)}): {arguments.n_trials} trials over "
        f"{', '.join(search.space.varying) or 'no varying axis'} -> {context.output_dir}",
        flush=True,
    )
    best = trainer.hyperparameter_search(
        hp_space=lambda trial: _training_values(search.space.values(trial)),
        compute_objective=_objective,
        n_trials=arguments.n_trials,
        direction="maximize",
        backend="optuna",
        hp_name=lambda trial: search.space.run_for(trial).run_id,
        storage=storage,
        study_name=search.study_name,
        load_if_exists=True,
        sampler=sampler,
        timeout=arguments.timeout_s,
    )
    finish_sweep(sweep)
    trials = optuna.load_study(study_name=search.study_name, storage=storage).get_trials(deepcopy=False)
    states = Counter(trial.state.name.lower() for trial in trials)
    print(
        f"study {search.study_name}: {len(trials)} trials ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))}); "
        f"next: python -m hf_soup.merge --ingredients {context.output_dir} --recipe greedy --output <soup folder>",
        flush=True,
    )
    return best


# Corner combinations checked before a search starts; a larger space has its first ones checked.
MAX_CHECKED_POINTS = 4096


def check_search_space(sweep: Any) -> None:
    """Refuse a search space with a value the sweep's per-point checks refuse, before anything is written.

    The sampler may draw any value of a categorical axis and anything within a range, so every
    combination of the categorical values and the ranges' ends goes through `check_point`.
    """
    from itertools import islice, product

    from hf_soup.sweep.context import run_options, training_arguments_for
    from hf_soup.sweep.planning import check_point

    context = sweep.context
    choices = {}
    for key, axis in sweep.axes.items():
        if isinstance(axis, Range):
            ends = [axis.low, axis.high]
            choices[key] = [int(v) for v in ends] if axis.kind == "randint" else ends
        else:
            choices[key] = list(axis)
    for combination in islice(product(*choices.values()), MAX_CHECKED_POINTS):
        values = dict(zip(choices, combination))
        run = RunConfig(0, run_id_for(values), values, tuple(choices))
        check_point(run, training_arguments_for(run, context), run_options(run, context), context)


def _training_values(values: dict[str, Any]) -> dict[str, Any]:
    """What the Trainer sets on its TrainingArguments per trial (model-config values go to model_init)."""
    return {k: v for k, v in values.items() if k in TRAINING_FIELDS}


def _objective(metrics: dict[str, float]) -> float:
    """Intermediate value reported to Optuna at each evaluation during training (pruning): held-out primary."""
    return float(metrics.get("eval_primary", -metrics.get("eval_loss", 0.0)))


def _open_study(optuna: Any, search: Search) -> Any:
    """The storage, with the study created once; concurrent workers racing to create it retry."""
    url = search.storage_url
    engine_kwargs = {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 120}}  # workers wait for each other's writes
    for attempt in range(STUDY_ATTEMPTS):
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
            optuna.create_study(
                storage=storage, study_name=search.study_name, direction="maximize", load_if_exists=True
            )
            return storage
        except (ImportError, ModuleNotFoundError) as err:  # a database driver is missing
            raise SoupError(f"--storage {_redact(url)}: {err}") from None
        except Exception as err:
            if attempt == STUDY_ATTEMPTS - 1 or not _transient(err):
                raise SoupError(f"--storage {_redact(url)}: {' '.join(str(err).split())[:300]}") from None
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


def _transient(err: Exception) -> bool:
    text = str(err).lower()
    return any(word in text for word in ("locked", "already exists", "unique constraint", "duplicat"))


def _redact(url: str) -> str:
    """`postgresql://user:secret@host/db` -> `postgresql://***@host/db`: URLs are recorded in files."""
    return redact_text(url)


def _import_optuna():
    try:
        import optuna
    except ImportError:
        raise SoupError(
            "hf_soup.hpo: optuna is not installed; pip install 'hf_soup[hpo]' (or pip install optuna)"
        ) from None
    return optuna


# ----------------------------------------------------------------------------- the command


def main(argv: list[str] | None = None) -> int:
    """`python -m hf_soup.hpo`: the sweep's flags plus SearchArguments; raises SoupError on bad input."""
    parsed = parse_sweep_args(argv, (*ARGUMENT_TYPES, SearchArguments), defaults=SWEEP_DEFAULTS)
    arguments = next(a for a in parsed.arguments if isinstance(a, SearchArguments))
    sweep_args = next(a for a in parsed.arguments if isinstance(a, SweepArguments))
    if arguments.n_trials < 1:
        raise SoupError(f"--n_trials {arguments.n_trials}: must be at least 1")
    if sweep_args.num_samples is not None or sweep_args.shard is not None or str(sweep_args.concurrent) != "1":
        raise SoupError("--num_samples, --shard and --concurrent are the grid's; a search runs --n_trials trials")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SoupError(
            "hf_soup.hpo runs one process per search worker: instead of a data-parallel launch, start one "
            "worker per GPU with the same --storage (each adds its own trials to the study and the pool)"
        )
    early = [k for k in parsed.axes if k.startswith("early_stopping")]
    if early:
        raise SoupError(f"{early[0]!r}: early stopping is shared by every trial of a search, not a search axis")
    _import_optuna()
    sweep = plan_sweep(parsed, expand=False)
    run_search(sweep, arguments)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
