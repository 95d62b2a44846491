"""README command (1), shrunken: the whole job on the real MiniLM and real SST-2, offline.

`scripts/demo.py` runs `accelerate launch scripts/sweep.py --config soup_ready` -> `python -m
hf_soup.merge` (with an out-of-distribution test set) -> a local
Hub-compatible server -> `python -m hf_soup.publish` -> `from_pretrained(repo_id)` + `pipeline(...)`
in a fresh cache. Here with two points of the soup-ready design, two steps each and no warm start,
so CI runs every stage for real in about a minute.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hf_soup.merge import DEFAULT_RECIPE

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOCAL_HUB_TOKEN = re.compile(rb"hf_local_[0-9a-f]{32}")  # what tests/hub_server hands out


def test_demo_runs_sweep_merge_publish_and_from_pretrained(glue_dir, minilm_dir, tmp_path, cli_env):
    ood_source = glue_dir.parent / "datasets" / "sentiment_domains" / "amazon.csv"
    if not ood_source.is_file():
        pytest.skip(f"out-of-distribution sentences not found at {ood_source}")
    with ood_source.open(newline="") as handle:
        rows = list(csv.reader(handle))
    ood = tmp_path / "amazon-40.csv"  # a few rows of both labels: the chain, not the figure, is tested here
    with ood.open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [rows[0], *[r for r in rows[1:] if r[1] == "0"][:20], *[r for r in rows[1:] if r[1] == "1"][:20]]
        )
    out = tmp_path / "demo"  # given relative and run outside the checkout: every step must agree where it is
    command = [
        sys.executable, str(PROJECT_ROOT / "scripts" / "demo.py"), "--glue_dir", str(glue_dir),
        "--output_dir", "demo", "--max_train_samples", "64", "--max_steps", "2", "--warm_start_epochs", "0",
        "--heldout_size", "48", "--max_test_samples", "32", "--num_samples", "2",
        "--grid", "learning_rate=5e-5", "seed=0,1", "--extra_test_files", f"amazon={ood}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=cli_env, timeout=900, cwd=tmp_path)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]

    for step in ("1/4 sweep", "2/4 merge", "3/4 publish", "4/4 load it back"):
        assert f"--- {step}" in result.stdout, step  # every stage ran and finished
    assert "$ accelerate launch --num_processes 1" in result.stdout and "a subsample" in result.stdout
    assert "--config soup_ready" in result.stdout and "--max_seq_length 64" in result.stdout  # the design shown
    assert "greedy soup" in result.stdout and "ensemble (2 models, 2x inference)" in result.stdout
    assert re.search(
        r"soup vs the best single ingredient, test accuracy: [+-]\d\.\d{4} \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]",
        result.stdout,
    )
    assert f"--extra_test_files amazon={ood}" in result.stdout
    assert re.search(r"out of distribution, amazon.*\n  \S[^:\n]*: [+-]\d\.\d{4} \[", result.stdout), log[-4000:]
    assert re.search(rf"\n  {DEFAULT_RECIPE} soup: [+-]\d\.\d{{4}} \[", result.stdout), log[-4000:]  # the one written
    assert "weights identical to" in result.stdout
    predictions = re.findall(r"-> (negative|positive) \((0\.\d\d|1\.00)\)", result.stdout)
    assert len(predictions) == 2  # two example sentences classified by pipeline() through the server

    soup_dir = out / "soups" / f"sst2-{DEFAULT_RECIPE}"
    soup = json.loads((soup_dir / "soup.json").read_text())
    assert soup["recipe"] == DEFAULT_RECIPE and len(soup["ingredients"]) == 2
    recorded = [i.get("hyperparameters") or {} for i in soup["ingredients"]]  # drawn from the soup-ready grid
    assert all(h.get("hidden_dropout_prob") in (0.1, 0.15) for h in recorded), recorded
    card = ModelCard.load(soup_dir / "README.md")
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.eval_results[0].metric_value == soup["results"]["soup"]["test"]["primary"]

    published = out / "hub"
    assert published.is_dir() and not LOCAL_HUB_TOKEN.search(log.encode())
    for path in out.rglob("*"):  # logs, cards, soup.json, ingredient.json, the server's repo files
        if path.is_file() and path.name != "state.json" and path.stat().st_size < 50_000_000:
            assert not LOCAL_HUB_TOKEN.search(path.read_bytes()), f"token written to {path}"
