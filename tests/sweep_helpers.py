"""Helpers shared by the sweep tests: a tiny GLUE folder and the sweep entry point, in-process.

A synthetic RTE folder (GLUE's own TSV layout) keeps the unit tests independent of ../shared/glue
and fast; the integration test uses the real data.
"""

from __future__ import annotations

import importlib.util
import os
import random
import select
import time
from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SWEEP_SCRIPT = PROJECT_ROOT / "scripts" / "sweep.py"

_WORDS = ["the", "cat", "dog", "sat", "ran", "on", "under", "a", "mat", "tree", "house", "is", "not", "big", "red"]


def write_tiny_rte(root: Path, train_rows: int = 120, dev_rows: int = 24, seed: int = 0) -> Path:
    """RTE in GLUE's layout: `index, sentence1, sentence2, label` (entailment / not_entailment)."""
    rng = random.Random(seed)
    folder = root / "RTE"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.tsv", train_rows), ("dev.tsv", dev_rows)):
        lines = ["index\tsentence1\tsentence2\tlabel"]
        for i in range(rows):
            first = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 20)))
            entails = i % 2 == 0
            second = " ".join(first.split()[:3]) if entails else " ".join(rng.choice(_WORDS) for _ in range(3))
            lines.append(f"{i}\t{first}\t{second}\t{'entailment' if entails else 'not_entailment'}")
        (folder / name).write_text("\n".join(lines) + "\n")
    return root


def load_sweep_main():
    """`main(argv)` of scripts/sweep.py, imported by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("hf_soup_sweep_script", SWEEP_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def tiny_flags(model: Path, glue: Path, out: Path, *extra: str) -> list[str]:
    """Flags of a seconds-long sweep on a tiny model: 40 held-out rows, short sequences, few steps."""
    return [
        "--model", str(model), "--task", "rte", "--glue_dir", str(glue), "--output_dir", str(out),
        "--heldout_size", "40", "--max_seq_length", "32", "--per_device_train_batch_size", "8",
        "--max_steps", "3", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def ingredient_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models are all overhead: on a busy 2-core machine two threads cost 5-10x in sync waits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def single_thread_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "OMP_NUM_THREADS": "1"}


@pytest.fixture(name="tiny_glue", scope="module")
def tiny_glue_fixture(tmp_path_factory) -> Path:
    return write_tiny_rte(tmp_path_factory.mktemp("glue"))


def wait_for(condition, seconds: float, what: str) -> None:
    """Poll `condition` until it holds; fail (not hang) after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def read_until(stream, text: str, seconds: float) -> str:
    """Read a subprocess pipe until `text` appears; fail (not hang) after `seconds` or at EOF."""
    seen, deadline = "", time.monotonic() + seconds
    while text not in seen:
        assert time.monotonic() < deadline, f"timed out waiting for {text!r} in: {seen[-2000:]}"
        if select.select([stream], [], [], 0.2)[0]:
            chunk = os.read(stream.fileno(), 65536).decode(errors="replace")
            assert chunk, f"stream closed before {text!r}: {seen[-2000:]}"
            seen += chunk
    return seen
