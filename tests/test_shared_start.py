"""The shared start (warm start / LP-FT) across shard jobs: a killed owner is taken over, a stuck one times out.

Deterministic: the owning job runs with `train_model` replaced by a hold that writes a marker and
sleeps, so the test knows it holds the lock mid-computation when it kills it (issue 15, item 3).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sweep_helpers import (
    SWEEP_SCRIPT,
    ingredient_dirs,
    load_sweep_main,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    read_until,
    single_thread_env,
    tiny_flags,
    tiny_glue_fixture,  # noqa: F401 (fixture `tiny_glue`)
    wait_for,
)

from hf_soup.errors import cli_main
from hf_soup.ingredient import read_ingredient

sweep_main = load_sweep_main()  # scripts/sweep.py's main(argv), in-process

HOLD_SHARED_START = """
import pathlib, sys, time
import hf_soup.sweep.shared_start as shared_start

def hold(*args, **kwargs):  # the job computing the warm start, stuck in the middle of it
    pathlib.Path(sys.argv[1]).write_text("computing")
    time.sleep(600)

shared_start.train_model = hold
from hf_soup.errors import cli_main
from hf_soup.sweep.cli import main
sys.exit(cli_main(main, sys.argv[2:]))
"""


@pytest.mark.slow
def test_waiters_time_out_on_a_stuck_owner_and_take_over_from_a_killed_one(tiny_bert_dir, tiny_glue, tmp_path,
                                                                            cli_env, capsys):  # fmt: skip
    out = tmp_path / "shards"
    flags = tiny_flags(tiny_bert_dir, tiny_glue, out, "--warm_start_epochs", "0.5", "--grid", "seed=0,1")
    env = single_thread_env(cli_env)
    marker = tmp_path / "owner-is-computing"
    owner = subprocess.Popen([sys.executable, "-c", HOLD_SHARED_START, str(marker), *flags, "--shard", "0/2"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    waiter = None
    try:
        wait_for(lambda: marker.is_file() or owner.poll() is not None, 180, "the owner to start the warm start")
        assert owner.poll() is None, "the owning job ended before it held the warm start"

        capsys.readouterr()
        assert cli_main(sweep_main, [*flags, "--shard", "1/2", "--shared_start_timeout", "1"]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith("error: shared_start_timeout: waited 1 s for the warm-start")
        assert not ingredient_dirs(out)

        waiter = subprocess.Popen([sys.executable, str(SWEEP_SCRIPT), *flags, "--shard", "1/2"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
        read_until(waiter.stdout, "warm-start: another job is computing it", 180)
        owner.kill()  # SIGKILL mid-computation: the kernel frees its lock, start.json never appears
        assert owner.wait(timeout=30) == -9
        rest, _ = waiter.communicate(timeout=300)
        assert waiter.returncode == 0
        assert "the job computing it stopped before finishing; computing it here" in rest.decode()
    finally:
        for process in (owner, waiter):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    (start,) = [p for p in (out / ".shared").iterdir() if p.is_dir()]
    assert json.loads((start / "start.json").read_text())["stage"] == "warm-start"
    assert [f.name.split("-")[0] for f in ingredient_dirs(out)] == ["seed1"]

    assert sweep_main([*flags, "--shard", "0/2"]) == 0  # the killed shard's rerun starts from the same point
    records = [read_ingredient(f) for f in ingredient_dirs(out)]
    assert len(records) == 2 and records[0]["start"]["weights_sha256"] == records[1]["start"]["weights_sha256"]
