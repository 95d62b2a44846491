"""Grid throughput on one device: `scripts/sweep.py --concurrent K` vs a plain sequential Trainer sweep.

    python benchmarks/grid_throughput.py --glue_dir ../shared/glue                         # MiniLM, RTE, 8 points
    python benchmarks/grid_throughput.py --glue_dir ../shared/glue --task mrpc --write BENCHMARKS.md
    python benchmarks/grid_throughput.py --glue_dir DIR --model MINILM_DIR --write BENCHMARKS.md   # weights elsewhere
    python benchmarks/grid_throughput.py --glue_dir ../shared/glue --ks 1,2 --max_steps 4 \\
        --train_samples 256 --test_samples 128                                             # a quick CPU check

One grid (learning rates x seeds), one run, one mode after another, each a fresh sweep (its own
cold token cache and output folder, so one-time work is counted in every mode):
  * plain: a run_glue-style loop over the grid (bench_common.plain_point): tokenise per point,
    pad to max length, random batches, Trainer.train + evaluate heldout/test + save, one point at a time;
  * K=1: hf_soup's sweep as is (`hf_soup.sweep.loop.run_sweep`: cached tokens, dynamic padding,
    length-grouped batches), one point at a time;
  * K=2, 4, 8 (or auto): `--concurrent K` (`hf_soup.sweep.concurrency.run_sweep_concurrently`).
Same model (loaded in float32; bf16 autocast where the GPU has it, for every mode), data,
hyperparameters and seeds.

Reported per mode: wall seconds for the whole grid, grid points per hour, aggregate training
samples/s (points x training samples per point / wall), ratios against plain and against K=1.
Soup quality: each K>1 ingredient against the same ingredient trained with K=1 (same run id):
max |difference| of heldout/test primary metrics and how many have bit-identical weights; and the
uniform soup of each mode's ingredients, scored on heldout and test. Exit status 1 when a K>1
ingredient differs from K=1 by more than --tolerance.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench_common import ROOT, bf16, machine, minilm_dir, plain_point, replace_section  # benchmarks/ is on sys.path

SECTION = "## Grid throughput on one GPU"


def sweep_argv(args, model_dir: Path, out: Path, rates: list[str], seeds: list[str]) -> list[str]:
    argv = [
        "--model", str(model_dir), "--task", args.task, "--glue_dir", args.glue_dir, "--output_dir", str(out),
        "--max_seq_length", str(args.max_seq_length), "--per_device_train_batch_size", str(args.batch_size),
        "--num_train_epochs", str(args.epochs), "--max_steps", str(args.max_steps), "--disable_tqdm", "true",
        "--precision", "bf16" if bf16() else "fp32", "--grid", "learning_rate=" + ",".join(rates),
        "seed=" + ",".join(seeds),
    ]  # fmt: skip
    if args.train_samples:
        argv += ["--max_train_samples", str(args.train_samples)]
    if args.test_samples:
        argv += ["--max_test_samples", str(args.test_samples)]
    return argv


def run_ours(argv: list[str], workers: int | str, cache: Path) -> dict:
    """One whole sweep (plan + train + score + leaderboard) in this process or its worker pool."""
    import torch

    from hf_soup.sweep.arguments import ARGUMENT_TYPES, SWEEP_DEFAULTS, parse_sweep_args
    from hf_soup.sweep.concurrency import run_sweep_concurrently
    from hf_soup.sweep.loop import run_sweep
    from hf_soup.sweep.planning import plan_sweep

    os.environ["HF_SOUP_CACHE"] = str(cache)  # cold: the one-time tokenisation is part of every mode
    free_memory()  # what earlier modes cached in this process is not held from the workers
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    sweep = plan_sweep(parse_sweep_args(argv, ARGUMENT_TYPES, defaults=SWEEP_DEFAULTS))
    records = run_sweep(sweep) if workers == 1 else run_sweep_concurrently(sweep, workers)
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_reserved() if torch.cuda.is_available() and workers == 1 else None
    return {"wall_s": wall, "records": {r["run_id"]: r for r in records}, "sweep": sweep, "peak_bytes": peak}


def free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_plain(args, model_dir: Path, work: Path, rates: list[str], seeds: list[str]) -> dict:
    from hf_soup.data import DataArguments

    data_args = DataArguments(task=args.task, glue_dir=args.glue_dir, max_train_samples=args.train_samples,
                              max_test_samples=args.test_samples, max_seq_length=args.max_seq_length)  # fmt: skip
    started = time.perf_counter()
    points = []
    for rate in rates:
        for seed in seeds:
            points.append(
                plain_point(model_dir, data_args, work / f"plain-{rate}-{seed}", learning_rate=float(rate),
                            seed=int(seed), epochs=args.epochs, batch_size=args.batch_size,
                            max_seq_length=args.max_seq_length, max_steps=args.max_steps)
            )  # fmt: skip
            free_memory()
    return {"wall_s": time.perf_counter() - started, "points": points}


def uniform_soup(folders: list[Path], context) -> dict[str, float]:
    """Average the ingredients' weights (float32) and score heldout/test as the sweep scores a point."""
    import torch
    from safetensors.torch import load_file

    from hf_soup.models import load_ingredient_model
    from hf_soup.sweep.trainer import score_model

    states = [load_file(folder / "model.safetensors") for folder in folders]
    average = {
        name: sum(state[name].float() for state in states) / len(states) if tensor.is_floating_point() else tensor
        for name, tensor in states[0].items()
    }
    model = load_ingredient_model(folders[0])
    unexpected = model.load_state_dict(average, strict=False).unexpected_keys
    if unexpected:
        raise RuntimeError(f"soup: unexpected weights {unexpected[:3]}")
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    scores = score_model(context, model, batch_size=64)
    return {split: scores[split]["primary"] for split in ("heldout", "test")}


def compare(reference: dict, other: dict) -> dict:
    """Per-ingredient differences of `other` against `reference` (same run ids)."""
    ids = sorted(reference)
    assert sorted(other) == ids, "the modes trained different grid points"
    delta = {
        split: max(abs(reference[i]["metrics"][split]["primary"] - other[i]["metrics"][split]["primary"]) for i in ids)
        for split in ("heldout", "test")
    }
    identical = sum(reference[i]["weights_sha256"] == other[i]["weights_sha256"] for i in ids)
    return {"delta": delta, "identical": identical, "count": len(ids)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue_dir", default=str(ROOT.parent / "shared" / "glue"))
    parser.add_argument("--model", default=None, help="model folder (default: the real all-MiniLM-L6-v2 wheel)")
    parser.add_argument("--task", default="rte")
    parser.add_argument("--ks", default="1,2,4,8", help="worker counts to measure (1 = the sequential sweep; auto)")
    parser.add_argument("--learning_rates", default="2e-5,3e-5,5e-5,1e-4")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max_steps", type=int, default=-1, help="per point (overrides epochs; quick checks)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--train_samples", type=int, default=None, help="subsample train (quick checks)")
    parser.add_argument("--test_samples", type=int, default=None, help="subsample the GLUE dev set (quick checks)")
    parser.add_argument("--tolerance", type=float, default=0.02, help="max |heldout/test difference| vs K=1")
    parser.add_argument("--skip_plain", action="store_true", help="leave out the plain Trainer baseline")
    parser.add_argument("--write", default=None, help="update this markdown file (section: " + SECTION + ")")
    args = parser.parse_args()

    import torch
    import transformers

    from hf_soup.ingredient import weights_sha256
    from hf_soup.sweep.concurrency import choose_gpu_workers, parse_concurrency

    transformers.logging.set_verbosity_error()
    model_dir = Path(args.model) if args.model else minilm_dir()
    rates, seeds = args.learning_rates.split(","), args.seeds.split(",")
    ks = [parse_concurrency(k) for k in args.ks.split(",")]
    if 1 not in ks:
        ks.insert(0, 1)  # the reference for soup quality and the "vs K=1" column
    work = Path(tempfile.mkdtemp(prefix="grid-bench-"))
    load_before, started_at = os.getloadavg()[0], dt.datetime.now()
    results: dict[str, dict] = {}
    try:
        if not args.skip_plain:
            results["plain"] = run_plain(args, model_dir, work, rates, seeds)
            print(f"plain Trainer sweep: {results['plain']['wall_s']:.1f} s", flush=True)
        for k in ks:
            label = f"K={k}"
            out = work / f"ours-{k}"
            results[label] = run_ours(sweep_argv(args, model_dir, out, rates, seeds), k, work / f"cache-{k}")
            for run_id, record in results[label]["records"].items():
                record["weights_sha256"] = weights_sha256(out / run_id)
            folders = [out / run_id for run_id in sorted(results[label]["records"])]
            results[label]["soup"] = uniform_soup(folders, results[label]["sweep"].context)
            print(f"{label}: {results[label]['wall_s']:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]

    reference = results["K=1"]
    points = len(rates) * len(seeds)
    train_size = len(reference["sweep"].context.features["train"])
    per_point = args.max_steps * args.batch_size if args.max_steps > 0 else train_size * args.epochs
    rows, failed = [], []
    for label, result in results.items():
        wall = result["wall_s"]
        if label == "plain":
            heldout = sum(p["heldout"] for p in result["points"]) / points
            soup, quality = "- (heads differ: no soup)", "-"
        else:
            heldout = sum(r["metrics"]["heldout"]["primary"] for r in result["records"].values()) / points
            soup = f"{result['soup']['heldout']:.4f} / {result['soup']['test']:.4f}"
            quality = "reference"
            if label != "K=1":
                diff = compare(reference["records"], result["records"])
                quality = (
                    f"{diff['identical']}/{diff['count']} bit-identical; max diff heldout "
                    f"{diff['delta']['heldout']:.4f}, test {diff['delta']['test']:.4f}"
                )
                if max(diff["delta"].values()) > args.tolerance:
                    failed.append(label)
        plain_ratio = f"{results['plain']['wall_s'] / wall:.2f}x" if "plain" in results else "-"
        rows.append(
            f"| {label} | {wall:.1f} | {points / wall * 3600:.0f} | {points * per_point / wall:.1f} | {plain_ratio} | "
            f"{reference['wall_s'] / wall:.2f}x | {heldout:.4f} | {soup} | {quality} |"
        )

    gpu = torch.cuda.is_available()
    notes = []
    if reference["peak_bytes"]:
        free = torch.cuda.mem_get_info()[0]
        auto, why = choose_gpu_workers(free, reference["peak_bytes"], points)
        notes.append(f"One K=1 run peaked at {reference['peak_bytes'] / 2**30:.2f} GiB reserved; `--concurrent auto` "
                     f"would pick K={auto} ({why}).")  # fmt: skip
    notes.append(
        "Bit-identical weights need equal CPU thread counts (K=1 runs with torch's default threads, each of K "
        "workers with cores // K) and deterministic kernels (GPU training uses atomics); the tolerance applies "
        "to the metrics."
    )
    if not gpu:
        notes.append(
            f"CPU run: the workers split the {os.cpu_count()} cores (threads per worker = cores // K), so "
            "concurrency adds no compute here. What K>1 gains on a CPU comes from filling each point's "
            "single-threaded phases (loading, scoring, saving: they dominate short points) and from sparing "
            "multi-threaded steps their synchronisation waits when other processes load the machine (load "
            f"average {load_before:.1f} -> {load_after:.1f} here); expect far less on a quiet CPU with long "
            "training phases, hence `auto` = 1 below 8 cores. This run validates the script and the "
            "identical-ingredients check; it says nothing about what a GPU gains."
        )
    title = f"### {'GPU run' if gpu else 'CPU validation run'}, {args.task}"
    lines = [
        title,
        "",
        f"- date: {started_at:%Y-%m-%d %H:%M}",
        f"- device: {machine()}; torch {torch.__version__}, transformers {transformers.__version__}; "
        f"load average {load_before:.1f} at start, {load_after:.1f} at end",
        f"- command: `python {shlex.join(['benchmarks/grid_throughput.py', *sys.argv[1:]])}`",
        f"- workload: {model_dir.name if args.model else 'all-MiniLM-L6-v2'} (float32 weights, "
        f"{'bf16 autocast' if bf16() else 'fp32'}) on {args.task}: {points} grid points (learning rates "
        f"{args.learning_rates} x seeds {args.seeds}), "
        + (f"{args.max_steps} steps" if args.max_steps > 0 else f"{train_size} training samples x {args.epochs:g} epochs")
        + f" per point at batch {args.batch_size}, max length {args.max_seq_length}; each point also scores "
        f"heldout ({len(reference['sweep'].context.features['heldout'])}) and test "
        f"({len(reference['sweep'].context.features['test'])}) and saves its weights",
        "",
        "| mode | wall s (whole grid) | grid points / hour | training samples/s | vs plain | vs K=1 | "
        "mean heldout | uniform soup heldout / test | ingredients vs K=1 |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "plain = a run_glue-style Trainer loop over the same grid (pad to max length, no token cache); "
        "K=1 = `scripts/sweep.py`; K>1 = `scripts/sweep.py --concurrent K`. "
        f"Quality check (tolerance {args.tolerance}): " + ("**failed** for " + ", ".join(failed) if failed else "passed") + ".",
        *(["", note] for note in notes),
    ]  # fmt: skip
    block = "\n".join(line for item in lines for line in (item if isinstance(item, list) else [item]))
    print(block)
    if args.write:
        replace_section(Path(args.write), title, block, parent=SECTION)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
