"""`python -m hf_soup.sweep`, `hf-soup-sweep` and `scripts/sweep.py`: parse, plan, train, rank.

    python -m hf_soup.sweep --config rte                      # a bundled example config (hf_soup/configs/)
    hf-soup-sweep --config my.yaml --grid seed=0,1,2          # the console script, after pip install
    torchrun --standalone --nproc_per_node 2 -m hf_soup.sweep --config rte   # each point data-parallel
    python -m hf_soup.sweep --model sentence-transformers/all-MiniLM-L6-v2 --task rte \\
        --glue_dir ../shared/glue --output_dir runs/rte \\
        --grid learning_rate=2e-5,5e-5 num_train_epochs=2,3 seed=0,1
    python -m hf_soup.sweep --model sentence-transformers/all-MiniLM-L6-v2 --train_file tickets.csv \
        --text_column_names subject,body --output_dir runs/tickets --grid seed=0,1   # your own data (hf_soup.data)
    accelerate launch --num_processes 8 -m hf_soup.sweep --config configs/sst2.yaml   # each point data-parallel
    python -m hf_soup.sweep --config configs/rte.yaml --shard 0/4                     # job 0 of a 4-job array
    python -m hf_soup.sweep --config configs/rte.yaml --concurrent 4                  # 4 points at once, one GPU
    python -m hf_soup.sweep --help                                                    # our flags; --help-all: every flag

Flags are HfArgumentParser's over hf_soup's argument dataclasses and `TrainingArguments`, so any
TrainingArguments field can be fixed (`--weight_decay 0.01`) or an axis (`--grid weight_decay=0,0.1`);
model-config fields (`hidden_dropout_prob`) too. Rerunning the same command skips finished points
and resumes an interrupted one. Then: `python -m hf_soup.merge --ingredients runs/rte ...`.

This module sits on top of the sweep package and of `hf_soup.sweep.concurrency` (which imports the
loop), so nothing below it imports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hf_soup.errors import cli_main
from hf_soup.sweep.arguments import ARGUMENT_TYPES, SWEEP_DEFAULTS, SweepArguments, parse_sweep_args
from hf_soup.sweep.concurrency import requested_workers, run_sweep_concurrently
from hf_soup.sweep.launch import configure_cpu_launch, process_state, refuse_sharded_launch
from hf_soup.sweep.launchers import LauncherArguments
from hf_soup.sweep.loop import run_sweep
from hf_soup.sweep.planning import plan_sweep


def main(argv: list[str] | None = None) -> int:
    """The whole sweep for `argv` (default: sys.argv[1:]); raises SoupError on bad input."""
    refuse_sharded_launch(argv)
    configure_cpu_launch()  # before the parser builds TrainingArguments
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "python -m hf_soup.sweep" if Path(sys.argv[0]).name == "__main__.py" else None  # not `__main__.py`
    parsed = parse_sweep_args(argv, (*ARGUMENT_TYPES, LauncherArguments), defaults=SWEEP_DEFAULTS, prog=prog)
    launcher = next(a for a in parsed.arguments if isinstance(a, LauncherArguments))
    if launcher.launcher not in (None, "none"):  # the grid as a job array (hf_soup.sweep.launchers)
        from hf_soup.sweep.launchers.submitit import launch

        return launch(parsed, argv, launcher)
    workers = requested_workers(next(a for a in parsed.arguments if isinstance(a, SweepArguments)))
    process_state()  # join the launcher's process group, if any, before planning
    sweep = plan_sweep(parsed)  # every check; nothing written yet
    if workers == 1:
        run_sweep(sweep)
    else:  # K points at a time in worker processes; exit 1 if some failed
        run_sweep_concurrently(sweep, workers)
    return 0


def run() -> None:
    """`python -m hf_soup.sweep`, `hf-soup-sweep`, scripts/sweep.py: one `error:` line and exit 2 on bad input."""
    sys.exit(cli_main(main))
