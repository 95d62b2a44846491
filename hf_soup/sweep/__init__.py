"""The sweep: fine-tune one pretrained model across a hyperparameter grid, one soup ingredient per point.

    python -m hf_soup.sweep --config configs/rte.yaml              # or: hf-soup-sweep, scripts/sweep.py
    accelerate launch -m hf_soup.sweep --config configs/rte.yaml   # each point data-parallel
    torchrun --nproc_per_node 2 -m hf_soup.sweep ...               # alike, without accelerate's launcher

One module per job, each importing only the ones above it in this list:
  * `grid`         — an axis parsed, checked, typed and expanded; run ids; shards;
  * `arguments`    — the sweep's dataclasses (flags and YAML keys) and their parser;
  * `launch`       — this process's place in a launch (ranks, CPU gloo groups), locks, agreement;
  * `identity`     — what a sweep's ingredients share (`sweep_id`), an output folder refused or resumed;
  * `context`      — what the points of a sweep share, and one point's TrainingArguments;
  * `planning`     — every check, the grid, the sweep's identity (`sweep.json`); writes nothing else;
  * `trainer`      — the Trainer extensions (length-grouped sampler, text2text collator) and the
                     load / train / score / write steps of one model;
  * `shared_start` — LP-FT and warm start, computed once per sweep under a lock;
  * `leaderboard`  — the ranked table of a folder's ingredients;
  * `loop`         — the grid points one after another (`run_sweep`, `run_grid_point`);
  * `concurrency`  — K points at a time in worker processes, each running the loop's steps;
  * `launchers/`   — the grid as a job array (submitit: SLURM or local processes; `--shard i/n`);
  * `hpo`          — a search's trials (Optuna, through the Trainer) as ingredients;
  * `cli`          — `main(argv)`: parse, plan, then the loop, the worker pool or a launcher.

The names below are what the launchers and the search build on. They load on first use (PEP 562),
so that importing a light module such as `grid` does not import torch and transformers.
"""

from __future__ import annotations

from hf_soup.lazy import lazy_exports

_EXPORTS = {
    "arguments": ("ARGUMENT_TYPES", "SWEEP_DEFAULTS", "TRAINING_FIELDS", "SweepArguments", "parse_sweep_args"),
    "grid": ("Range", "RunConfig", "run_id_for", "shard_runs"),
    "context": ("WORK_DIR", "run_options", "training_arguments_for"),
    "identity": ("finished_folders",),
    "planning": ("plan_sweep", "write_sweep_file"),
    "trainer": ("SoupTrainer", "free_memory", "load_model", "make_trainer", "write_model_folder"),
    "shared_start": ("prepare_start",),
    "leaderboard": ("LEADERBOARD_FILE", "leaderboard"),
    "loop": ("finish_sweep", "ingredient_record"),
}  # fmt: skip
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
