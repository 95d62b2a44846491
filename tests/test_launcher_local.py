"""`--launcher submitit --cluster local`: the shards as real local jobs (submitit's local executor)
training a tiny model, then the merge; a preempted shard requeued through submitit's checkpointing;
a killed shard resubmitted alone. The same code paths a SLURM array takes, minus sbatch."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from sweep_helpers import (
    ingredient_dirs,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    tiny_flags,
    tiny_glue_fixture,  # noqa: F401 (fixture `tiny_glue`)
)

from hf_soup.errors import cli_main
from hf_soup.ingredient import read_ingredient
from hf_soup.sweep.cli import main as sweep_main
from hf_soup.sweep.grid import expand_grid, shard_runs

pytest.importorskip("submitit")

DEADLINE_S = 600  # only a hung test ever gets near it; nothing asserts on time


@pytest.fixture(autouse=True)
def job_environment(cli_env, monkeypatch):
    """The local jobs inherit this process's environment: this checkout first, one thread each."""
    monkeypatch.setenv("PYTHONPATH", cli_env["PYTHONPATH"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _launcher(out: Path, *extra: str) -> list[str]:
    return ["--launcher", "submitit", "--cluster", "local", "--gpus_per_shard", "0", "--poll_interval_s", "0.2", *extra]


def _record(out: Path) -> dict:
    return json.loads((out / ".launcher" / "array.json").read_text())


def _wait_for(predicate, what: str):
    """Poll the file system until `predicate()` is truthy (a state, never a duration, is what we wait for)."""
    start = time.monotonic()
    while not (found := predicate()):
        if time.monotonic() - start > DEADLINE_S:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)
    return found


def _shard_status(out: Path, index: int, attempt: int = 1) -> dict | None:
    path = out / ".launcher" / "shards" / f"{index}.json"
    try:
        status = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return status if status["attempt"] == attempt and status["sweep_pid"] else None


def _checkpoint(out: Path, run_id: str = "*") -> Path | None:
    """A complete checkpoint (trainer_state.json is written last) of `run_id`'s point."""
    found = sorted((out / ".work").glob(f"{run_id}/checkpoint-*/trainer_state.json"))
    return found[0] if found else None


def test_two_local_shards_a_killed_one_resubmitted_alone_then_the_merge_and_a_rerun_does_nothing(
    tiny_bert_dir, tiny_glue, tmp_path, capsys
):
    out = tmp_path / "out"
    soup = tmp_path / "soup"
    argv = [
        *tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "seed=0,1"),
        "--max_steps", "30", "--save_strategy", "steps", "--save_steps", "3",
        *_launcher(out, "--shards", "2", "--merge", "uniform", "--merge_output", str(soup)),
    ]  # fmt: skip
    assert cli_main(sweep_main, [*argv, "--no_wait"]) == 0
    first = _record(out)["jobs"]
    stdout = capsys.readouterr().out
    assert all(first[i]["job_id"] in stdout for i in "01") and str(out / ".launcher") in stdout

    # Shard 0's node dies mid-point: no signal handler runs, so nothing requeues it.
    (point,) = shard_runs(expand_grid({"seed": [0, 1]}), "0/2")
    status = _wait_for(lambda: _shard_status(out, 0), "shard 0 started")
    _wait_for(lambda: _checkpoint(out, point.run_id), "a checkpoint of shard 0's point")
    os.kill(status["sweep_pid"], signal.SIGSTOP)
    os.kill(status["pid"], signal.SIGKILL)
    os.kill(status["sweep_pid"], signal.SIGCONT)  # its sweep gets SIGTERM as its parent died (PR_SET_PDEATHSIG)
    _wait_for(lambda: not Path(f"/proc/{status['sweep_pid']}").exists(), "the killed shard's sweep stopped")

    # The rerun resubmits shard 0 alone, attaches to shard 1, waits, then merges.
    assert cli_main(sweep_main, argv) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert f"resubmitting shard 0/2 (job {first['0']['job_id']}): LOST" in stdout
    jobs = _record(out)["jobs"]
    assert jobs["0"]["job_id"] != first["0"]["job_id"] and jobs["1"] == first["1"]
    assert read_ingredient(out / point.run_id)["train"]["resumed_from_step"] >= 3  # went on from its checkpoint
    ingredients = ingredient_dirs(out)
    shards = sorted(read_ingredient(p)["command"].split("--shard ")[1] for p in ingredients)
    assert shards == ["0/2", "1/2"]  # each point trained by its own shard job
    assert all("--launcher" not in read_ingredient(p)["command"] for p in ingredients)
    soup_record = json.loads((soup / "soup.json").read_text())
    assert soup_record["recipe"] == "uniform" and len(soup_record["ingredients"]) == 2
    assert "| 2 |" in (out / "leaderboard.md").read_text()  # both shards' points in one leaderboard

    assert cli_main(sweep_main, argv) == 0  # rerun: everything done, soup there: nothing submitted
    assert _record(out)["jobs"] == jobs
    assert "already holds a soup" in capsys.readouterr().out


def test_a_preempted_shard_is_requeued_and_resumes_its_point_from_the_checkpoint(
    tiny_bert_dir, tiny_glue, tmp_path, capsys
):
    out = tmp_path / "out"
    argv = [
        *tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "seed=0"),
        "--max_steps", "60", "--save_strategy", "steps", "--save_steps", "3",
        *_launcher(out, "--no_wait"),
    ]  # fmt: skip
    assert cli_main(sweep_main, argv) == 0
    status = _wait_for(lambda: _shard_status(out, 0), "shard 0 started")
    _wait_for(lambda: _checkpoint(out), "a checkpoint of the point")
    os.kill(status["sweep_pid"], signal.SIGSTOP)  # hold the sweep mid-point, so the signal lands there
    os.kill(status["pid"], signal.SIGUSR2)  # what SLURM sends before preemption or the time limit

    argv.remove("--no_wait")
    assert cli_main(sweep_main, argv) == 0, capsys.readouterr().err  # attaches, waits for the requeued job
    (ingredient,) = ingredient_dirs(out)
    resumed = read_ingredient(ingredient)["train"]["resumed_from_step"]
    assert resumed is not None and resumed >= 3
    assert _shard_status(out, 0, attempt=2) is not None  # the same job, requeued with a fresh ShardJob
    job = _record(out)["jobs"]["0"]
    log = (out / ".launcher" / job["job_id"] / f"{job['job_id']}_0_log.out").read_text()
    assert "preempted or out of time during attempt 1; requeued" in log
    assert f"resuming {ingredient.name} from checkpoint-" in log
    assert job["submissions"] == 1  # requeued by submitit, not resubmitted by us
