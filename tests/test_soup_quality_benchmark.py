"""benchmarks/soup_quality.py reads its numbers from soup.json and edits only its own BENCHMARKS.md section.

python -m pytest tests/test_soup_quality_benchmark.py      # no training, well under a second
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
from soup_folders import soup_record

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("soup_quality", ROOT / "benchmarks" / "soup_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sweep(tmp_path) -> Path:
    folder = tmp_path / "rte-warm-0000"
    for i, row in enumerate(soup_record()["ingredients"]):
        (folder / row["name"]).mkdir(parents=True)
        record = {"train": {"wall_s": 10.0 + i}, "start": {"heldout": {"primary": 0.55}}}
        (folder / row["name"] / "ingredient.json").write_text(json.dumps(record))
    return folder


def test_summary_is_read_from_soup_json(bench, sweep):
    soup = soup_record()
    row = bench.summarise("rte", "warm", soup, sweep)
    results = soup["results"]
    assert row["best_test"] == results["best_single"]["test"]["primary"]
    assert row["greedy_test"] == results["greedy"]["test"]["primary"]
    assert row["uniform_test"] == results["uniform"]["test"]["primary"]
    assert row["ensemble_test"] == results["ensemble"]["test"]["primary"]
    assert row["oracle_test"] == results["oracle_best_single"]["test"]["primary"]
    assert (row["kept"], row["n"], row["heldout_size"]) == (2, 4, 249)
    assert row["start_heldout"] == 0.55 and row["train_s"] == 10 + 11 + 12 + 13
    line = bench.table([row]).splitlines()[-1]
    assert "| 2/4 |" in line and "+0.0108" in line  # greedy 0.6390 - best single 0.6282


def test_loss_criterion_still_compares_with_the_best_heldout_metric_single(bench, sweep):
    soup = copy.deepcopy(soup_record())
    soup["criterion"] = "loss"
    soup["results"]["best_single"] = {"name": soup["ingredients"][-1]["name"]}  # the lowest-loss one, say
    soup["ingredients"].reverse()
    row = bench.summarise("rte", "warm", soup, sweep)
    assert row["best_heldout"] == 0.6426 and row["best_test"] == 0.6282


def test_verdicts_need_every_task_and_two_strict_gains(bench):
    def row(task, greedy, best, kept=2):
        return {"task": task, "variant": "warm", "criterion": "metric", "greedy_test": greedy, "best_test": best,
                "kept": kept}  # fmt: skip

    met = bench.verdicts([row("rte", 0.6, 0.5), row("mrpc", 0.7, 0.6), row("cola", 0.4, 0.4, kept=1)])
    assert "3/3" in met[0] and "strictly better on 2" in met[0] and "goal met" in met[0]
    missed = bench.verdicts([row("rte", 0.6, 0.5), row("mrpc", 0.5, 0.6)])
    assert "1/2" in missed[0] and "goal not met" in missed[0]


def test_write_replaces_only_its_own_section(bench, tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Sweep throughput\n\nkeep me\n\n## Merge speed\n\nme too\n")
    bench.replace_section(path, bench.SECTION, f"{bench.SECTION}\n\nfirst")
    bench.replace_section(path, bench.SECTION, f"{bench.SECTION}\n\nsecond \\1 $0")  # no regex escapes interpreted
    text = path.read_text()
    assert text.count(bench.SECTION) == 1 and "second \\1 $0" in text and "first" not in text
    assert "keep me" in text and "me too" in text


def test_sweeps_are_cached_per_setting(bench, tmp_path):
    args = bench.parse_args([])
    model = tmp_path / "minilm"
    warm, plain = (bench.sweep_folder("rte", v, model, args) for v in ("warm", "plain"))
    assert warm != plain and warm == bench.sweep_folder("rte", "warm", model, args)
    command = bench.sweep_command("rte", "warm", model, warm, args)
    assert "--warm_start_epochs" in command and "--lp_ft_epochs" not in command
    assert command[command.index("--num_train_epochs") + 1] == f"{args.fork_epochs:g}"
    assert bench.train_samples(["1024", "cola=2000"], "cola") == 2000
    assert bench.train_samples(["1024", "cola=2000"], "rte") == 1024
    assert bench.train_samples(["0"], "sst2") == 0
