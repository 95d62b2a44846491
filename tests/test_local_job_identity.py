"""`--cluster local` counts a shard as running only while its recorded pid is still its own process:
after a reboot or pid reuse, the pid names an unrelated process, and the rerun must resubmit, not wait."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hf_soup.sweep.launchers.submitit import LOST, JobArray, process_identity


def _array(jobs: dict[str, dict]) -> JobArray:
    """A JobArray reading only its record (what `_states` consults on --cluster local)."""
    array = object.__new__(JobArray)
    array.cluster, array.record = "local", {"jobs": jobs}
    array.folder = None
    array._outcome = lambda job_id: None  # no result file: LOST unless running
    return array


@pytest.fixture
def stranger():
    """A live process that is no shard (e.g. what got the pid after a reboot)."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def shard_like():
    """A live process whose command line is a submitit local job's."""
    code = "import time; time.sleep(60)  # submitit.local._local"
    process = subprocess.Popen([sys.executable, "-c", code])
    yield process
    process.kill()
    process.wait()


def test_a_pid_now_held_by_another_process_is_not_a_running_shard(stranger):
    pid = str(stranger.pid)
    own = process_identity(pid)
    assert own is not None and own["start_ticks"] > 0
    assert _array({"0": {"job_id": pid, "process": own}})._states([pid]) == {pid: "RUNNING"}
    earlier = {**own, "start_ticks": own["start_ticks"] - 1}  # the shard that had this pid before
    assert _array({"0": {"job_id": pid, "process": earlier}})._states([pid]) == {pid: LOST}
    other_boot = {**own, "boot_id": "0" * 36}  # recorded before a reboot
    assert _array({"0": {"job_id": pid, "process": other_boot}})._states([pid]) == {pid: LOST}


def test_records_without_an_identity_check_the_command_line(stranger, shard_like):
    pid, shard = str(stranger.pid), str(shard_like.pid)
    states = _array({"0": {"job_id": pid}, "1": {"job_id": shard}})._states([pid, shard])
    assert states == {pid: LOST, shard: "RUNNING"}
