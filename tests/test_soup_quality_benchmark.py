"""benchmarks/soup_quality.py: replicated sweeps cached by its own manifest; statistics and its BENCHMARKS.md section.

python -m pytest tests/test_soup_quality_benchmark.py      # no training, seconds
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_script(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load_script("soup_quality", ROOT / "benchmarks" / "soup_quality.py")


def _ingredient(folder: Path, lr: float, seed: int, head: int) -> None:
    folder.mkdir(parents=True)
    record = {"hyperparameters": {"learning_rate": lr}, "seed": seed, "head_init_seed": head}
    (folder / "ingredient.json").write_text(json.dumps(record))


def test_replicates_are_independent_sweeps(bench, tmp_path):
    args = bench.parse_args(["--output_dir", str(tmp_path), "--seeds_per_replicate", "2"])
    seeds = [bench.replicate_seeds(r, args) for r in range(3)]
    assert len({head for head, _ in seeds}) == 3  # one head initialisation per replicate
    assert not set(seeds[0][1]) & set(seeds[1][1]) and not set(seeds[1][1]) & set(seeds[2][1])
    rte = bench.TASKS["rte"]
    folders = {bench.sweep_folder(rte, r, args) for r in range(3)}
    assert len(folders) == 3 and bench.sweep_folder(rte, 0, args) == bench.sweep_folder(rte, 0, args)
    assert bench.sweep_folder(bench.TASKS["mrpc"], 0, args) not in folders
    command = bench.sweep_command(rte, 1, tmp_path / "f", Path("model"), args)
    assert command[command.index("--head_init_seed") + 1] == str(seeds[1][0])
    assert command[-2:] == ["learning_rate=2e-05,5e-05,0.0001", "seed=2,3"]
    assert "--warm_start_epochs" in command and "--glue_dir" in command
    ag = bench.sweep_command(bench.TASKS["ag_news"], 0, tmp_path / "g", Path("model"), args)
    assert "--train_file" in ag and "--glue_dir" not in ag and "title,description" in ag


def test_the_manifest_finds_ingredients_whatever_their_folder_names(bench, tmp_path):
    args = bench.parse_args(["--output_dir", str(tmp_path)])
    rte = bench.TASKS["rte"]
    folder = bench.sweep_folder(rte, 0, args)
    head, (seed,) = bench.replicate_seeds(0, args)
    _ingredient(folder / "lr2e-05-abc", 2e-5, seed, head)
    _ingredient(folder / "renamed_by_a_later_sweep", 1e-4, seed, head)
    _ingredient(folder / "other-head", 5e-5, seed, head + 7)  # another replicate's head: not ours
    _ingredient(folder / ".shared" / "warm", 5e-5, seed, head)  # the shared start is no ingredient
    found = bench.found_ingredients(folder, rte, 0, args)
    assert set(found) == {(2e-5, seed), (1e-4, seed)} and found[(1e-4, seed)].name == "renamed_by_a_later_sweep"


def test_a_complete_replicate_is_never_swept_again(bench, tmp_path, monkeypatch):
    args = bench.parse_args(["--output_dir", str(tmp_path), "--tasks", "rte", "--replicates", "1"])
    rte = bench.TASKS["rte"]
    folder = bench.sweep_folder(rte, 0, args)
    head, (seed,) = bench.replicate_seeds(0, args)
    calls = []
    monkeypatch.setattr(bench, "run", lambda command, log: calls.append(command) or 0.0)
    monkeypatch.setattr(bench, "minilm_dir", lambda: tmp_path / "model")
    for lr in args.learning_rates[:-1]:
        _ingredient(folder / f"p{lr}", lr, seed, head)
    bench.stage_sweep(args, tmp_path / "log")
    assert len(calls) == 1  # one point missing: the sweep runs (and trains only that point)
    _ingredient(folder / "last", args.learning_rates[-1], seed, head)
    bench.stage_sweep(args, tmp_path / "log")
    assert len(calls) == 1  # complete: not invoked at all


def _fake_merged_replicate(bench, args, task, replicate, rng, gain_rows: int):
    """A finished replicate as the merge leaves it: ingredients, soup.json over them, test logits."""
    import numpy as np

    folder = bench.sweep_folder(task, replicate, args)
    head, (seed,) = bench.replicate_seeds(replicate, args)
    ingredients = []
    for lr in args.learning_rates:
        path = folder / f"lr{lr:g}"
        _ingredient(path, lr, seed, head)
        record = json.loads((path / "ingredient.json").read_text())
        record["train"] = {"wall_s": 60.0}
        (path / "ingredient.json").write_text(json.dumps(record))
        ingredients.append(path)
    references = rng.integers(0, 2, 200)
    best = np.where(rng.random(200) < 0.7, references, 1 - references)
    better = best.copy()
    wrong = np.flatnonzero(best != references)[:gain_rows]
    better[wrong] = references[wrong]
    logits, results = {}, {}
    for key, _ in bench.RECIPES:
        predictions = best if key == "best_single" else better
        logits[key] = np.eye(2)[predictions]
        results[key] = {"test": {"primary": float(np.mean(predictions == references))}, "heldout": {"primary": 0.6}}
        if key in ("greedy", "greedy-loss", "filtered-uniform"):
            results[key]["kept"] = ["a", "b"]
    logits["oracle_best_single"] = logits["best_single"]
    results["oracle_best_single"] = {"test": {"primary": results["best_single"]["test"]["primary"]}}
    soup_dir, predictions_file, _ = bench.soup_paths(folder)
    soup_dir.mkdir(parents=True)
    soup = {
        "task": task.name,
        "primary_metric": "accuracy" if task.name == "rte" else "matthews_correlation",
        "split": {"heldout_size": 249},
        "ingredients": [{"path": str(p), "test": {"primary": 0.6}} for p in ingredients],
        "results": results,
        "commands": {"merge": "python -m hf_soup.merge ... " + args.merge_args},
    }
    (soup_dir / "soup.json").write_text(json.dumps(soup))
    np.savez(predictions_file, references=references, **logits)


def test_the_report_pools_replicates_keeps_earlier_runs_and_owns_its_section(bench, tmp_path):
    import numpy as np

    results = tmp_path / "results.json"
    results.write_text(
        json.dumps({"runs": [{"key": "runs-1-3", "title": "Runs 1-3", "markdown": "### Runs 1-3\n\nold"}]})
    )
    page = tmp_path / "BENCHMARKS.md"
    page.write_text(
        f"# Benchmarks\n\n## Sweep throughput\n\nkeep me\n\n{bench.SECTION}\n\nhand-written\n\n## Later\n\nme too\n"
    )
    argv = ["--output_dir", str(tmp_path / "runs"), "--tasks", "rte", "cola", "--replicates", "3", "--stage", "report"]
    argv += [
        "--results",
        str(results),
        "--plot",
        str(tmp_path / "gains.png"),
        "--write",
        str(page),
        "--n_resamples",
        "300",
    ]
    args = bench.parse_args(argv)
    rng = np.random.default_rng(0)
    for task in ("rte", "cola"):
        for replicate in range(3):
            _fake_merged_replicate(bench, args, bench.TASKS[task], replicate, rng, gain_rows=12)
    bench.main(argv)
    bench.main(argv)  # a rerun replaces its own run, never the earlier ones
    runs = json.loads(results.read_text())["runs"]
    assert runs[0]["key"] == "runs-1-3" and len(runs) == 2
    analysis = runs[1]["analysis"]
    assert analysis["per_task"]["rte"]["replicates"] == 3
    uniform = analysis["aggregate"]["uniform"]
    assert uniform["pairs"] == 6 and uniform["won"] == 6 and uniform["gain"]["low"] > 0
    assert uniform["gain"]["estimate"] == pytest.approx(
        np.mean([analysis["per_task"][t]["recipes"]["uniform"]["gain"]["estimate"] for t in ("rte", "cola")])
    )
    assert uniform["ensemble_share"] == pytest.approx(1.0) and uniform["goal_met"]
    text = page.read_text()
    assert "hand-written" not in text and "keep me" in text and "me too" in text
    assert text.count(bench.SECTION) == 1 and "### Runs 1-3" in text and "### Run 4" in text
    assert text.index("### Runs 1-3") < text.index("### Run 4")  # oldest first, appended
    assert "gains.png" in text and (tmp_path / "gains.png").stat().st_size < 200_000


def _gain(estimate: float, low: float, high: float) -> dict:
    return {"gain": {"estimate": estimate, "low": low, "high": high, "se": 0.001}, "goal_met": False}


def test_a_soup_whose_whole_interval_is_below_zero_is_never_picked_and_is_named(bench, tmp_path):
    """Run 4's numbers: on the choice pool greedy's interval lies wholly below 0; it must be reported
    as losing there, and the best single kept, not greedy picked for its 'largest lower bound'."""
    choice = {
        "uniform": _gain(-0.0064, -0.0146, 0.0021),
        "greedy": _gain(-0.0012, -0.0025, -0.0001),
        "model-stock": _gain(-0.0150, -0.0259, -0.0043),
        "ensemble": _gain(-0.0067, -0.0146, 0.0009),
    }
    aggregate = {
        key: {**value, "pairs": 15, "won": 0, "lost": 2, "trails_by_more_than_one_se": ["sst2"]}
        for key, value in (("greedy", _gain(-0.0010, -0.0032, 0.0013)), ("ensemble", _gain(-0.0039, -0.0111, 0.0035)))
    }
    analysis = {"aggregate": aggregate, "choice": choice, "choice_tasks": ["mrpc", "sst2"]}
    assert bench.recommend(analysis) == bench.KEEP_BEST_SINGLE
    text = "\n".join(bench.verdict(analysis, "greedy"))
    assert "on the pool the choice is made on (mrpc, sst2): `greedy` -0.0012 [-0.0025, -0.0001]" in text
    assert "`model-stock`" in text and "keep the best single ingredient" in text and "picks `" not in text
    choice["uniform"] = _gain(0.0030, 0.0000, 0.0060)  # cannot be shown to lose, positive mean: a soup is worth it
    assert bench.recommend(analysis) == "uniform"
    choice["model-stock"] = {**_gain(0.0010, 0.0002, 0.0018), "goal_met": True}  # the goal outranks the rest
    assert bench.recommend(analysis) == "model-stock"

    results = tmp_path / "results.json"  # --stage render: Run 4's verdict again from its stored analysis alone
    results.write_text((ROOT / "benchmarks" / "results" / "soup_quality.json").read_text())
    page = tmp_path / "BENCHMARKS.md"
    page.write_text(f"# Benchmarks\n\n{bench.SECTION}\n\nold\n\n## Later\n\nkept\n")
    bench.main(["--stage", "render", "--results", str(results), "--write", str(page)])
    run4 = next(run for run in json.loads(results.read_text())["runs"] if run["title"].startswith("Run 4"))
    assert run4["recommended"] == bench.KEEP_BEST_SINGLE and run4["analysis"]["choice"]["greedy"]["gain"]["high"] < 0
    text = page.read_text()
    assert "keep the best single ingredient" in text and "evidence picks `greedy`" not in text
    assert "(mrpc, cola, sst2, ag_news): `greedy` -0.0012 [-0.0025, -0.0001]" in text and "kept" in text


def _fake_extra_set(bench, args, task, replicate, rng, name: str, loss_rows: int) -> None:
    """Add one extra test set to a fake merged replicate, on which every soup LOSES `loss_rows` rows."""
    import numpy as np

    folder = bench.sweep_folder(task, replicate, args)
    soup_dir, predictions_file, _ = bench.soup_paths(folder)
    soup = json.loads((soup_dir / "soup.json").read_text())
    saved = dict(np.load(predictions_file))
    references = np.random.default_rng(7).integers(0, 2, 300)  # one set: the same rows for every replicate
    best = np.where(rng.random(300) < 0.8, references, 1 - references)
    worse = best.copy()
    right = np.flatnonzero(best == references)[:loss_rows]
    worse[right] = 1 - references[right]
    for key in list(soup["results"]):
        predictions = best if key in ("best_single", "oracle_best_single") else worse
        saved[f"{key}@{name}"] = np.eye(2)[predictions]
        soup["results"][key][f"extra:{name}"] = {"primary": float(np.mean(predictions == references))}
    for row in soup["ingredients"]:
        row[f"extra:{name}"] = {"primary": 0.7}
    saved[f"references@{name}"] = references
    soup["extra_tests"] = {name: {"source": "file", "rows": 300}}
    (soup_dir / "soup.json").write_text(json.dumps(soup))
    np.savez(predictions_file, **saved)


def test_out_of_distribution_sets_are_pooled_apart_from_the_task_test_splits(bench, tmp_path):
    import numpy as np

    argv = ["--output_dir", str(tmp_path / "runs"), "--tasks", "rte", "--replicates", "2", "--stage", "report"]
    argv += ["--results", str(tmp_path / "r.json"), "--plot", str(tmp_path / "g.png"), "--n_resamples", "300"]
    args = bench.parse_args(argv)
    rng = np.random.default_rng(1)
    for replicate in range(2):
        _fake_merged_replicate(bench, args, bench.TASKS["rte"], replicate, rng, gain_rows=10)
        _fake_extra_set(bench, args, bench.TASKS["rte"], replicate, rng, "amazon", loss_rows=15)
    replicates = bench.load_replicates(args)
    assert [(r.task, r.shift) for r in replicates] == [("rte", None)] * 2 + [("rte@amazon", "amazon")] * 2
    analysis = bench.analyse(replicates, 300, 0)
    assert analysis["in_distribution"] == ["rte"] and analysis["shifted"] == ["rte@amazon"]
    in_dist, ood = analysis["aggregate"]["uniform"], analysis["aggregate_ood"]["uniform"]
    assert in_dist["pairs"] == 2 and ood["pairs"] == 2  # never pooled together
    assert in_dist["gain"]["low"] > 0
    assert ood["gain"]["estimate"] == pytest.approx(-15 / 300) and ood["gain"]["high"] < 0
    assert analysis["choice_tasks"] == ["rte"]  # nothing is chosen on an extra test set
    entry = {"title": "t", "method": "m", "analysis": analysis, "verdict": bench.verdict(analysis, "uniform")}
    text = bench.render_run(entry)
    assert "Out of distribution, over all pairs of rte@amazon" in text
    assert any("Out of distribution (rte@amazon): `uniform` gains -0.0500" in line for line in entry["verdict"])


def test_trajectory_comparisons_read_the_three_merges_of_the_same_runs(bench, tmp_path):
    """Last-k averages vs final points vs greedy over one run's checkpoints, paired on the same test rows."""
    import numpy as np

    argv = ["--design", "run5", "--output_dir", str(tmp_path / "runs"), "--tasks", "sst2", "--replicates", "2"]
    args = bench.parse_args(argv)
    task = bench.RUN5_TASKS["sst2"]
    rng = np.random.default_rng(2)
    references = rng.integers(0, 2, 200)  # one test split: the same rows in every replicate
    replicates = []
    for replicate in range(2):
        folder = bench.sweep_folder(task, replicate, args)
        final = np.where(rng.random(200) < 0.7, references, 1 - references)
        averaged = final.copy()
        fixed = np.flatnonzero(final != references)[:8]  # the average gets 8 more rows right
        averaged[fixed] = references[fixed]
        rows = {"main": averaged, "final": final, "checkpoints": averaged}
        for merge, soup_dir, predictions in (
            ("main", *bench.soup_paths(folder)[:2]),
            ("final", folder.with_name(f"{folder.name}-final-soup"), folder.with_name(f"{folder.name}-final-predictions.npz")),
            ("checkpoints", folder.with_name(f"{folder.name}-checkpoints-soup"), folder.with_name(f"{folder.name}-checkpoints-predictions.npz")),
        ):  # fmt: skip
            soup_dir.mkdir(parents=True)
            score = float(np.mean(rows[merge] == references))
            step = "-step-90" if merge == "final" else ""
            soup = {
                "task": "sst2",
                "primary_metric": "accuracy",
                "ingredients": [{"run_id": f"run{i}{step}", "test": {"primary": score - (0.01 * i if step else 0)}} for i in range(3)],
                "results": {key: {"test": {"primary": score}} for key in ("best_single", "uniform", "greedy")},
            }  # fmt: skip
            (soup_dir / "soup.json").write_text(json.dumps(soup))
            logits = np.eye(2)[rows[merge]]
            np.savez(predictions, references=references, best_single=logits, uniform=logits, greedy=logits)
        replicates.append(bench.Replicate("sst2", replicate, soup, {}, references, [], None))
    views = bench.analyse_trajectories(replicates, args, 300, 0)
    gains = views["sst2"]["gains"]
    assert views["sst2"]["replicates"] == 2
    assert gains["greedy soup: of last-k averages vs of final points"]["estimate"] == pytest.approx(8 / 200)
    assert gains["greedy over the best run's checkpoints vs its last-k average"]["estimate"] == pytest.approx(0.0)
    per_run = gains["each run: its last-k average vs its final point"]
    assert per_run["runs"] == 6 and per_run["estimate"] == pytest.approx(8 / 200 + 0.01)  # + (0 + .01 + .02) / 3
    assert "| greedy soup: of last-k averages vs of final points | +0.0400" in "\n".join(
        bench.render_trajectories(views)
    )


def test_trajectory_points_become_ingredients_the_merge_can_read(bench, tmp_path):
    """Each kept point of a run becomes a folder with a valid ingredient.json (read_ingredient accepts it)."""
    from hf_soup.ingredient import FORMAT, FORMAT_VERSION, read_ingredient

    sweep = tmp_path / "sst2-r0-abc"
    run = sweep / "lr2e-05_seed1"
    run.mkdir(parents=True)
    record = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "run_id": "lr2e-05_seed1", "task": "sst2",
        "base_model": {"name_or_path": "m"}, "head_init_seed": 42, "seed": 1,
        "hyperparameters": {"learning_rate": 2e-5}, "split": {}, "metrics": {"heldout": {"primary": 0.9}},
        "train": {"averaged": {"last_k": 2}},
    }  # fmt: skip
    (run / "ingredient.json").write_text(json.dumps(record))
    (run / "tokenizer.json").write_text("{}")
    for step in (100, 200):
        point = sweep / bench.TRAJECTORY_DIR / "lr2e-05_seed1" / f"step-{step}"
        point.mkdir(parents=True)
        (point / "model.safetensors").write_bytes(b"weights")
        (point / "config.json").write_text("{}")
    points = bench.trajectory_points(sweep, [run])["lr2e-05_seed1"]
    assert [p.name for p in points] == ["lr2e-05_seed1-step-100", "lr2e-05_seed1-step-200"]
    for point, step in zip(points, (100, 200)):
        read = read_ingredient(point)
        assert read["run_id"] == f"lr2e-05_seed1-step-{step}" and read["hyperparameters"]["trajectory_step"] == step
        assert read["metrics_of"].startswith("the run's last-k average")
        assert (point / "tokenizer.json").is_file() and (point / "model.safetensors").read_bytes() == b"weights"


def test_only_replicates_splits_the_jobs_between_stages_run_side_by_side(bench, tmp_path):
    argv = ["--output_dir", str(tmp_path), "--tasks", "rte", "cola", "--replicates", "3", "--only_replicates", "0", "2"]
    jobs = bench.jobs(bench.parse_args(argv))
    assert [(task.name, r) for task, r in jobs] == [("rte", 0), ("cola", 0), ("rte", 2), ("cola", 2)]
    every = bench.jobs(bench.parse_args(argv[:7]))
    assert len(every) == 6


def test_the_verdict_names_recipes_that_clear_the_bar_out_of_distribution_without_trailing_in_it(bench):
    def pool(low: float, trailing: list[str]) -> dict:
        gain = {"estimate": low + 0.004, "low": low, "high": low + 0.008, "se": 0.002}
        return {
            "gain": gain,
            "pairs": 3,
            "won": 1,
            "lost": 1,
            "trails_by_more_than_one_se": trailing,
            "goal_met": False,
        }

    analysis = {
        "aggregate": {"greedy": pool(-0.004, []), "uniform": pool(-0.01, ["sst2"]), "ensemble": pool(-0.01, [])},
        "aggregate_ood": {"greedy": pool(0.002, []), "uniform": pool(0.003, []), "ensemble": pool(0.003, [])},
        "shifted": ["sst2@imdb"],
        "choice": {"greedy": pool(-0.004, []), "uniform": pool(-0.01, ["sst2"]), "ensemble": pool(-0.01, [])},
        "choice_tasks": ["sst2"],
    }
    line = next(x for x in bench.verdict(analysis, "greedy") if x.startswith("* Whole interval above 0 in or out"))
    assert "`greedy`" in line and "`uniform`" not in line  # uniform trails in distribution by > 1 SE


def test_a_merged_replicate_kept_in_the_repository_is_reported_without_its_run_folders(bench, tmp_path, monkeypatch):
    import shutil

    import numpy as np

    monkeypatch.setattr(bench, "EVIDENCE_DIR", tmp_path / "kept")
    runs = tmp_path / "runs"
    argv = ["--output_dir", str(runs), "--tasks", "rte", "--replicates", "1", "--n_resamples", "200"]
    args = bench.parse_args(argv)
    rte = bench.TASKS["rte"]
    _fake_merged_replicate(bench, args, rte, 0, np.random.default_rng(3), gain_rows=9)
    before = bench.load_replicates(args)
    folder = bench.sweep_folder(rte, 0, args)
    ingredients = sorted(folder.iterdir())
    kept = bench.keep_evidence(folder, rte, 0, ingredients, args)
    assert kept == bench.evidence_folder(rte, 0, args) and kept.parent == tmp_path / "kept"
    assert {"soup.json", "predictions.npz", "ingredients.json"} <= {p.name for p in kept.iterdir()}
    written = (kept / "soup.json").read_text() + (kept / "ingredients.json").read_text()
    assert str(tmp_path) not in written  # paths relative to the folder above the project, else only their last name
    kept_paths = [row["path"] for row in json.loads((kept / "soup.json").read_text())["ingredients"]]
    assert [Path(path).name for path in kept_paths] == ["lr2e-05", "lr5e-05", "lr0.0001"]
    assert not any(path.startswith("/") for path in kept_paths)
    for path in runs.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    after = bench.load_replicates(args)
    assert len(before) == len(after) == 1
    assert set(after[0].logits) == set(before[0].logits)
    for key, logits in before[0].logits.items():
        assert np.array_equal(after[0].logits[key], logits)
    assert after[0].soup["results"] == before[0].soup["results"] and len(after[0].ingredients) == 3
    # nothing is trained or merged again for it
    calls = []
    monkeypatch.setattr(bench, "run", lambda command, log: calls.append(command) or 0.0)
    monkeypatch.setattr(bench, "minilm_dir", lambda: tmp_path / "model")
    bench.stage_sweep(args, tmp_path / "log")
    bench.stage_merge(args, tmp_path / "log")
    assert calls == []


def test_the_evidence_is_named_by_the_settings_not_by_where_the_shared_data_lies(bench, tmp_path):
    rte = bench.TASKS["rte"]
    here = bench.parse_args(["--output_dir", str(tmp_path / "a")])
    elsewhere = bench.parse_args(["--output_dir", str(tmp_path / "b"), "--glue_dir", str(tmp_path / "glue")])
    other = bench.parse_args(["--output_dir", str(tmp_path / "a"), "--fork_epochs", "3"])
    assert bench.sweep_folder(rte, 0, here).name != bench.sweep_folder(rte, 0, elsewhere).name  # paths in the key
    assert bench.evidence_folder(rte, 0, here) == bench.evidence_folder(rte, 0, elsewhere)
    assert bench.evidence_folder(rte, 0, here) != bench.evidence_folder(rte, 0, other)
    assert bench.evidence_folder(rte, 0, here) != bench.evidence_folder(rte, 1, here)


def test_the_current_answer_names_every_part_of_the_latest_run(bench):
    def run(title, line):
        return {"title": title, "analysis": {}, "verdict": [line]}

    results = {
        "runs": [run("Run 4: old", "* four"), run("Run 5: sst2", "* five a"), run("Run 5, AG News: x", "* five b")]
    }
    answer = "\n".join(bench.current_answer(results))
    assert "* five a" in answer and "* five b" in answer and "* four" not in answer
    assert answer.index("Run 5: sst2") < answer.index("Run 5, AG News: x")


def test_a_task_with_fewer_than_three_replicates_is_a_progress_report_that_meets_no_goal(bench, tmp_path):
    import numpy as np

    argv = ["--output_dir", str(tmp_path / "runs"), "--tasks", "rte", "--replicates", "1", "--n_resamples", "300"]
    args = bench.parse_args(argv)
    _fake_merged_replicate(bench, args, bench.TASKS["rte"], 0, np.random.default_rng(0), gain_rows=20)
    analysis = bench.analyse(bench.load_replicates(args), 300, 0)
    uniform = analysis["aggregate"]["uniform"]
    assert uniform["gain"]["low"] > 0 and not uniform["trails_by_more_than_one_se"]  # would clear the bar...
    assert not uniform["goal_met"]  # ...but on one replicate the goal is not judged
    lines = bench.verdict(analysis, "greedy")
    assert lines[0].startswith("* A progress report: rte has 1 of 3 replicates")
    assert "No recipe is picked from a progress report" in lines[-1]


def test_the_demos_task_never_chooses_the_defaults(bench, tmp_path):
    """The demo shows its soup on its own test split, so that split must not pick the default recipe."""
    import numpy as np

    demo = _load_script("demo_script", ROOT / "scripts" / "demo.py")
    argv = ["--output_dir", str(tmp_path / "runs"), "--tasks", "sst2", "mrpc", "--replicates", "1", "--stage", "report"]
    args = bench.parse_args(argv)
    assert args.choose_excluding == [demo.DEFAULT_TASK]
    rng = np.random.default_rng(2)
    for name in ("sst2", "mrpc"):
        _fake_merged_replicate(bench, args, bench.TASKS[name], 0, rng, gain_rows=10)
    analysis = bench.analyse(bench.load_replicates(args), 100, 0, tuple(args.choose_excluding))
    assert set(analysis["in_distribution"]) == {"mrpc", "sst2"}
    assert analysis["choice_tasks"] == ["mrpc"]
