"""`--launcher submitit` against a fake SLURM (tests/fake_slurm.py): the job script it submits and
how it reads job states, attaches on a rerun and resubmits only failed shards. Nothing trains:
finished shards are simulated by writing their ingredient.json files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fake_slurm import FakeSlurm, sbatch_directives
from sweep_helpers import one_torch_thread, tiny_flags, tiny_glue_fixture  # noqa: F401 (fixtures)

from hf_soup.errors import SoupError, cli_main
from hf_soup.ingredient import build_ingredient, write_ingredient
from hf_soup.sweep.cli import main as sweep_main
from hf_soup.sweep.grid import expand_grid, shard_runs

pytest.importorskip("submitit")


@pytest.fixture
def slurm(tmp_path, monkeypatch) -> FakeSlurm:
    cluster = FakeSlurm(tmp_path / "slurm")
    cluster.env(monkeypatch)
    return cluster


def _launch(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main(sweep_main, argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _record(out: Path) -> dict:
    return json.loads((out / ".launcher" / "array.json").read_text())


def _finish_points(out: Path, shard: str, seeds: list[int]) -> list[str]:
    """Write the ingredient.json files a shard's sweep would have written (no weights: nothing reads them)."""
    record = _record(out)
    runs = shard_runs(expand_grid({"seed": seeds}), shard)
    for run in runs:
        (out / run.run_id).mkdir(parents=True)
        write_ingredient(
            out / run.run_id,
            build_ingredient(
                run_id=run.run_id, sweep_id=record["sweep_id"], task="rte", primary_metric="accuracy",
                base_model={"name_or_path": "tiny"}, head_init_seed=42, seed=run.values["seed"],
                hyperparameters={}, split={}, grid_axes=["seed"],
                metrics={"heldout": {"accuracy": 0.5, "primary": 0.5}, "test": {"accuracy": 0.5, "primary": 0.5}},
            ),
        )  # fmt: skip
    return [run.run_id for run in runs]


def _submitted_shards(out: Path, job_ids: list[str]) -> list:
    """The ShardJob submitit pickled for each job (what the node will run)."""
    from submitit.core.utils import DelayedSubmission, JobPaths

    return [
        DelayedSubmission.load(JobPaths(out / ".launcher" / "%j", job_id=j).submitted_pickle).function for j in job_ids
    ]


def test_one_array_with_the_requested_resources_and_the_sweep_command(
    slurm, tiny_bert_dir, tiny_glue, tmp_path, capsys
):
    out = tmp_path / "out"
    flags = tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "seed=0,1,2,3", "--hub_token", "hf_secret")
    launcher = [
        "--launcher", "submitit", "--shards", "4", "--array_parallelism", "2", "--slurm_partition", "gpu",
        "--gpus_per_shard", "2", "--timeout_min", "90", "--slurm_account", "lab", "--mem_gb", "32",
        "--slurm_setup", "module load cuda", "source env/bin/activate", "--no_wait",
    ]  # fmt: skip
    code, stdout, _ = _launch([*flags[:4], *launcher, *flags[4:]], capsys)
    assert code == 0
    scripts = slurm.scripts()
    assert list(scripts) == ["1000"]  # ONE submission: a job array
    directives = sbatch_directives(scripts["1000"])
    assert directives["array"] == "0-3%2"
    assert directives["partition"] == "gpu"
    assert directives["gpus-per-node"] == "2"
    assert directives["time"] == "90"
    assert directives["account"] == "lab"
    assert directives["mem"] == "32GB"
    assert directives["signal"].startswith("USR2@")  # what triggers the checkpoint-and-requeue
    assert directives["output"] == str(out / ".launcher" / "%A_%a" / "%A_%a_0_log.out")
    assert "module load cuda\nsource env/bin/activate\n" in scripts["1000"]
    assert f"-m submitit.core._submit {out / '.launcher' / '%j'}" in scripts["1000"]
    assert "1000_0" in stdout and "1000_3" in stdout and str(out / ".launcher") in stdout

    record = _record(out)
    assert record["shards"] == 4 and [record["jobs"][str(i)]["job_id"] for i in range(4)] == [
        f"1000_{i}" for i in range(4)
    ]
    for i, job in enumerate(_submitted_shards(out, [f"1000_{i}" for i in range(4)])):
        command = job.command(port=29600)
        assert command[:6] == [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            "2",
            "--num_machines",
        ]
        sweep = command[command.index("hf_soup.sweep") + 1 :]
        assert sweep == [*flags, "--shard", f"{i}/4"]  # the user's flags, none of the launcher's
    assert not (out / "sweep.json").exists()  # the shards write the sweep, not the launcher
    assert "hf_secret" not in (out / ".launcher" / "array.json").read_text()  # the job needs it; records do not


def test_states_attach_on_rerun_and_resubmit_only_failed_shards(slurm, tiny_bert_dir, tiny_glue, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        *tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "seed=0,1,2,3"),
        "--launcher", "submitit", "--shards", "2", "--gpus_per_shard", "1", "--poll_interval_s", "0.01",
    ]  # fmt: skip
    assert _launch([*argv, "--no_wait"], capsys)[0] == 0
    assert list(slurm.scripts()) == ["1000"]

    # A rerun while the array is queued or running attaches: no second submission.
    slurm.set_states(**{"1000_0": "RUNNING", "1000_1": "PENDING"})
    code, stdout, _ = _launch([*argv, "--no_wait"], capsys)
    assert code == 0 and list(slurm.scripts()) == ["1000"]
    assert "shard 0/2: job 1000_0, running" in stdout and "shard 1/2: job 1000_1, pending" in stdout
    without_shards = [a for a in argv if a not in ("--shards", "2")]
    code, stdout, _ = _launch([*without_shards, "--no_wait"], capsys)  # keeps the array's layout
    assert code == 0 and list(slurm.scripts()) == ["1000"] and "shard 1/2: job 1000_1" in stdout
    code, _, stderr = _launch([*without_shards, "--shards", "4", "--no_wait"], capsys)  # another layout
    assert code == 2 and "is still running (jobs 1000_0, 1000_1)" in stderr and list(slurm.scripts()) == ["1000"]

    # Watching: shard 0 completes, shard 1 runs out of time; the failure names its log, exit 1.
    _finish_points(out, "0/2", [0, 1, 2, 3])
    slurm.set_states(**{"1000_0": ["RUNNING", "COMPLETED"], "1000_1": ["PENDING", "RUNNING", "TIMEOUT"]})
    log = out / ".launcher" / "1000_1" / "1000_1_0_log.err"
    assert log.parent.is_dir()  # the job's folder (submitted pickle inside)
    log.write_text("Traceback ...\nerror: something the sweep said\n")
    code, _, stderr = _launch(argv, capsys)
    assert code == 1
    error = stderr.strip().splitlines()[-1]
    assert error.startswith("error: 1 of 2 shards failed: shard 1/2 (job 1000_1): TIMEOUT")
    assert "error: something the sweep said" in error and f"log: {log}" in error
    assert "resubmit only those" in error

    # The rerun resubmits shard 1 alone (one job, not the whole array) and keeps shard 0's record.
    code, stdout, _ = _launch([*argv, "--no_wait"], capsys)
    assert code == 0 and list(slurm.scripts()) == ["1000", "1001"]
    assert "resubmitting shard 1/2 (job 1000_1): TIMEOUT" in stdout
    assert "array" not in sbatch_directives(slurm.scripts()["1001"])
    assert [job.shard for job in _submitted_shards(out, ["1001"])] == ["1/2"]
    record = _record(out)
    assert record["jobs"]["0"]["job_id"] == "1000_0" and record["jobs"]["1"]["job_id"] == "1001"
    assert record["jobs"]["1"]["submissions"] == 2

    # A failed job, then its shard finishes on the next try; everything done: exit 0 and the whole leaderboard.
    slurm.set_states(**{"1001": ["RUNNING", "FAILED"]})
    assert _launch(argv, capsys)[0] == 1
    assert _launch([*argv, "--no_wait"], capsys)[0] == 0 and list(slurm.scripts())[-1] == "1002"
    finished = _finish_points(out, "1/2", [0, 1, 2, 3])
    slurm.set_states(**{"1002": ["RUNNING", "COMPLETED"]})
    code, stdout, _ = _launch(argv, capsys)
    assert code == 0 and list(slurm.scripts()) == ["1000", "1001", "1002"]
    assert all(run_id in (out / "leaderboard.md").read_text() for run_id in finished)


def test_without_accounting_squeue_decides_and_cancel_stops_the_array(
    slurm, tiny_bert_dir, tiny_glue, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "out"
    argv = [
        *tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "seed=0,1"),
        "--launcher", "submitit", "--shards", "2", "--no_wait",
    ]  # fmt: skip
    assert _launch(argv, capsys)[0] == 0
    monkeypatch.setenv("FAKE_SACCT_DOWN", "1")
    slurm.set_states(**{"1000_0": "RUNNING", "1000_1": "PENDING"})
    code, stdout, _ = _launch(argv, capsys)
    assert code == 0 and list(slurm.scripts()) == ["1000"]  # squeue says both still queued: attach
    assert "squeue" in slurm.calls() and "running" in stdout

    code, stdout, _ = _launch([*argv, "--cancel"], capsys)
    assert code == 0 and "scancel 1000_0 1000_1" in slurm.calls()
    monkeypatch.delenv("FAKE_SACCT_DOWN")
    code, stdout, _ = _launch(argv, capsys)  # cancelled shards are failed ones: resubmitted
    assert code == 0 and "CANCELLED" in stdout and list(slurm.scripts()) == ["1000", "1001"]


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--shard", "0/2"], "--shard: the launcher splits the grid itself"),
        (["--cluster", "mars"], "--cluster 'mars'"),
        (["--launcher", "ray"], "--launcher 'ray'"),
        (["--shards", "0"], "--shards 0"),
        (["--merge", "nosuch"], "--recipe 'nosuch'"),
        (["--gpus_per_shard", "2", "--concurrent", "2"], "--concurrent 2"),
    ],
)
def test_bad_launcher_flags_are_one_line_and_submit_nothing(
    extra, match, slurm, tiny_bert_dir, tiny_glue, tmp_path, capsys
):
    out = tmp_path / "out"
    argv = [*tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "seed=0,1"), "--launcher", "submitit", *extra]
    code, _, stderr = _launch(argv, capsys)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], lines
    assert slurm.scripts() == {} and not out.exists()


def test_refused_submission_missing_srun_and_missing_submitit_are_one_line(
    slurm, tiny_bert_dir, tiny_glue, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "out"
    argv = [*tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "seed=0,1"), "--launcher", "submitit"]
    monkeypatch.setenv("FAKE_SBATCH_FAIL", "invalid partition specified: gpu")
    code, _, stderr = _launch([*argv, "--slurm_partition", "gpu"], capsys)
    assert code == 2 and stderr.strip().splitlines()[-1].startswith("error: submitting the array failed")
    assert "invalid partition specified: gpu" in stderr.strip().splitlines()[-1]
    assert not (out / ".launcher" / "array.json").exists()

    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no srun anywhere
    code, _, stderr = _launch([*argv, "--cluster", "slurm"], capsys)
    assert code == 2 and "srun" in stderr and "--cluster local" in stderr.strip().splitlines()[-1]

    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    code, _, stderr = _launch(argv, capsys)
    assert code == 2 and stderr.strip() == (
        "error: --launcher submitit: submitit is not installed; pip install 'hf_soup[slurm]' (or pip install submitit)"
    )


def test_refused_under_a_data_parallel_launch(monkeypatch):
    """Every rank of `accelerate launch ... --launcher submitit` would submit its own array."""
    from hf_soup.sweep.arguments import SweepArguments
    from hf_soup.sweep.launchers import LauncherArguments
    from hf_soup.sweep.launchers.submitit import _check_options

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SoupError, match="not under accelerate launch / torchrun"):
        _check_options(LauncherArguments(launcher="submitit"), SweepArguments())
    monkeypatch.setenv("WORLD_SIZE", "1")
    _check_options(LauncherArguments(launcher="submitit"), SweepArguments())


def test_token_flags_are_masked_in_records_and_logs():
    from hf_soup.sweep.launchers import masked

    argv = ["--hub_token", "hf_x", "--token=hf_y", "--tokenizer_name", "bert", "--hub-token", "hf_z"]
    assert masked(argv) == ["--hub_token", "***", "--token=***", "--tokenizer_name", "bert", "--hub-token", "***"]
