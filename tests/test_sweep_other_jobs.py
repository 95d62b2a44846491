"""Two identical sweeps at once: a point the other job is training is waited for, not reported as
skipped, and the leaderboard this job prints has its row. A point whose job died unfinished is
trained here.

"The other job" is played by the test: it holds the point's lock (as a training job does), then
either renames the point's finished ingredient into place (as that job's last step does) or lets
go without one (as a killed job does).
"""

from __future__ import annotations

import contextlib
import shutil
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
    write_tiny_rte,
)

from hf_soup.atomic import exclusive_lock
from hf_soup.sweep.loop import HELD_ELSEWHERE

sweep_main = load_sweep_main()


@pytest.fixture(scope="module")
def finished_sweep(tiny_bert_dir, tmp_path_factory):
    """(data folder, a finished two-point sweep folder)."""
    root = tmp_path_factory.mktemp("two-jobs")
    glue = write_tiny_rte(root / "glue")
    out = root / "out"
    assert sweep_main(tiny_flags(tiny_bert_dir, glue, out, "--grid", "seed=0,1")) == 0
    return glue, out


def _leaderboard_rows(text: str) -> set[str]:
    """The run ids of the last leaderboard printed in `text`."""
    table = text[text.rindex("| # ") :]
    return {line.split("|")[2].strip() for line in table.splitlines()[2:] if line.startswith("|")}


@pytest.mark.parametrize(
    "concurrent",
    [
        None,
        pytest.param("2", marks=pytest.mark.slow),  # two worker processes: the pool's path
    ],
)
@pytest.mark.parametrize("other_job", ["finishes", "dies"])
def test_a_point_another_job_holds_is_waited_for_and_in_the_leaderboard(
    finished_sweep, tiny_bert_dir, tmp_path, cli_env, other_job, concurrent
):
    glue, finished = finished_sweep
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    first, second = ingredient_dirs(out)
    kept = tmp_path / "kept"
    first.rename(kept)  # the other job's point, not yet in place
    if concurrent:
        shutil.rmtree(second)  # two points to train: the pool, not the sequential fallback
    flags = tiny_flags(tiny_bert_dir, glue, out, "--grid", "seed=0,1")
    if concurrent:
        flags += ["--concurrent", concurrent]
    env = {**single_thread_env(cli_env), "PYTHONUNBUFFERED": "1"}
    job = None
    with contextlib.ExitStack() as other:
        other.enter_context(exclusive_lock(first))  # the other job is training it
        try:
            job = subprocess.Popen([sys.executable, str(SWEEP_SCRIPT), *flags], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)  # fmt: skip
            seen = read_until(job.stdout, f"{first.name}: {HELD_ELSEWHERE}", 300)
            assert job.poll() is None  # still waiting: no leaderboard yet
            if other_job == "finishes":
                kept.rename(first)  # its last step: the finished ingredient renamed into place
        except BaseException:
            if job is not None:
                job.kill()
                job.wait()
            raise
    rest, _ = job.communicate(timeout=600)
    text = seen + rest.decode(errors="replace")
    assert job.returncode == 0, text[-3000:]
    assert "skipped" not in text and "not trained here" not in text
    if other_job == "finishes":
        assert f"{first.name}: finished by another job: {first.name} heldout " in text
    else:
        assert f"{first.name}: its job stopped before finishing it; trained here" in text
    assert _leaderboard_rows(text) == {first.name, second.name}
    assert [p.name for p in ingredient_dirs(out)] == sorted([first.name, second.name])
