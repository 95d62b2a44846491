"""Run the sweep's grid on schedulers that already exist, rather than on one of our own.

    python -m hf_soup.sweep --config C --launcher submitit --shards 8 --slurm_partition gpu \\
        --gpus_per_shard 1 --timeout_min 240 --merge greedy          # one SLURM job array, then the soup
    python -m hf_soup.sweep --config C --launcher submitit --cluster local --shards 2   # laptop / tests

Why a package of its own: the sweep knows how to train one shard (`--shard i/n`); a launcher
only decides where each shard runs, watches it and reruns what failed. Keeping it apart keeps
the sweep free of scheduler code, and `LauncherArguments` (the flags) importable without
submitit installed, so `--help` lists them everywhere. The launcher itself is
`hf_soup.sweep.launchers.submitit` (imported only when `--launcher` is given).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from hf_soup.redact import mask_secret_flags

LAUNCHERS = ("submitit",)
CLUSTERS = ("slurm", "local")


@dataclass
class LauncherArguments:
    """Where the shards of a sweep run. Unused (and not passed to the shards) without --launcher."""

    launcher: str | None = field(
        default=None,
        metadata={"help": "submitit: submit the grid as ONE job array of --shards jobs, watch it, rerun what failed"},
    )
    cluster: str | None = field(
        default=None,
        metadata={"help": "slurm | local (shards as local processes: laptop mode); default: slurm when srun exists"},
    )
    shards: int | None = field(
        default=None, metadata={"help": "number of array jobs (each runs --shard i/n); default: one per grid point"}
    )
    array_parallelism: int | None = field(
        default=None, metadata={"help": "at most this many shards run at once (SLURM's --array=...%%K; default: all)"}
    )
    gpus_per_shard: int = field(
        default=1, metadata={"help": "GPUs per shard job; above 1 the shard trains each point under accelerate launch"}
    )
    cpus_per_shard: int | None = field(default=None, metadata={"help": "CPU cores per shard job"})
    mem_gb: float | None = field(default=None, metadata={"help": "memory per shard job, in GB"})
    timeout_min: int = field(
        default=240, metadata={"help": "time limit of one shard job; at the limit it is requeued and resumes"}
    )
    max_requeues: int = field(
        default=3, metadata={"help": "how many times a shard that reached its time limit is requeued"}
    )
    slurm_partition: str | None = field(default=None, metadata={"help": "SLURM partition"})
    slurm_account: str | None = field(default=None, metadata={"help": "SLURM account"})
    slurm_qos: str | None = field(default=None, metadata={"help": "SLURM quality of service"})
    slurm_constraint: str | None = field(default=None, metadata={"help": "SLURM node constraint (features)"})
    slurm_setup: list[str] | None = field(
        default=None,
        metadata={
            "help": "shell lines the job script runs first (e.g. 'module load cuda' 'source .venv/bin/activate')"
        },
    )
    launcher_folder: str | None = field(
        default=None, metadata={"help": "job scripts, logs and the array record (default: <output_dir>/.launcher)"}
    )
    no_wait: bool = field(
        default=False, metadata={"help": "submit (or attach), print the job ids and return; rerun to watch or merge"}
    )
    poll_interval_s: float = field(default=30.0, metadata={"help": "seconds between two looks at the jobs' states"})
    cancel: bool = field(default=False, metadata={"help": "cancel the array's running and pending jobs, then return"})
    merge: str | None = field(
        default=None, metadata={"help": "once every shard succeeded, merge the sweep with this recipe (e.g. greedy)"}
    )
    merge_output: str | None = field(
        default=None, metadata={"help": "the soup folder --merge writes (default: <output_dir>-<recipe>)"}
    )
    merge_args: str | None = field(
        default=None, metadata={"help": "more flags for python -m hf_soup.merge, as one string (e.g. '--strict')"}
    )


LAUNCHER_FIELDS = frozenset(f.name for f in fields(LauncherArguments))


def masked(argv: list[str]) -> list[str]:
    """`argv` with the values of token flags replaced by `***` (hf_soup.redact): for logs and records."""
    return mask_secret_flags(argv)
