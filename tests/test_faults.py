"""Fault injection: kill, corrupt, starve and lock out each stage; see RELIABILITY.md for the table.

Each test injects one fault into a real entry point and checks the three things RELIABILITY.md
promises: what the user sees (one `error:` line, a non-zero exit), what is on disk (nothing
half-written: no output, or the previous output untouched) and that a rerun completes. Faults that
other test files already inject are listed in RELIABILITY.md with their test's name.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from soup_factory import make_ingredient

from hf_soup.checkpoints import Checkpoint

HANG_BEFORE_RENAME = """
import pathlib, sys, time
import hf_soup.atomic as atomic

def hang(tmp, dest, overwrite):  # the worst moment: everything written, nothing renamed yet
    pathlib.Path(sys.argv[1]).write_text(str(tmp))
    time.sleep(600)

atomic._rename_into_place = hang
from hf_soup.errors import cli_main
from hf_soup.merge import main
sys.exit(cli_main(main, sys.argv[2:]))
"""


@pytest.fixture
def ingredients(tmp_path, tokenizer_dir):
    return [make_ingredient(tmp_path / f"run{i}", tokenizer_dir, noise_seed=i, with_record=False) for i in (1, 2)]


def merge_argv(ingredients: list[Path], output: Path) -> list[str]:
    return ["--ingredients", *map(str, ingredients), "--recipe", "uniform", "--skip_scoring", "--output", str(output)]


def run_merge(argv: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "hf_soup.merge", *argv]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, **kwargs)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()  # progress bars go to stderr too: the error is the last line
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:] and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def wait_for(predicate, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigkill_during_a_merge_leaves_no_soup_and_the_rerun_completes(ingredients, tmp_path, cli_env):
    output, flag = tmp_path / "soup", tmp_path / "written"
    script = tmp_path / "hang_merge.py"
    script.write_text(HANG_BEFORE_RENAME)
    argv = merge_argv(ingredients, output)
    merge = subprocess.Popen([sys.executable, str(script), str(flag), *argv], env=cli_env, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: flag.exists() or merge.poll() is not None, "the merge to finish writing")
        assert merge.poll() is None, merge.stderr.read()
        staged = Path(flag.read_text())
        assert (staged / "model.safetensors").is_file() and (staged / "soup.json").is_file()
    finally:
        merge.send_signal(signal.SIGKILL)
        merge.wait()
    assert not output.exists()  # a complete-looking folder was never visible under the output's name
    assert leftovers(tmp_path) == [staged.name]

    rerun = run_merge(argv, cli_env)
    assert rerun.returncode == 0, rerun.stderr
    assert leftovers(tmp_path) == []  # the killed merge's temporary is cleared (the kernel freed its lock)
    soup = Checkpoint(output)
    first, second = Checkpoint(ingredients[0]), Checkpoint(ingredients[1])
    name = "classifier.weight"
    assert torch.allclose(soup[name], (first[name] + second[name]) / 2, atol=1e-7)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[: len(data) // 2], "cannot read safetensors"),  # truncated by a copy
        (lambda data: b"\xff" * 8 + data[8:], "cannot read safetensors"),  # header length garbage
        (lambda data: b"", "cannot read safetensors"),  # zero bytes (a full disk at copy time)
    ],
    ids=["truncated", "corrupt-header", "empty"],
)
def test_damaged_weights_are_one_line_and_write_nothing(ingredients, tmp_path, cli_env, damage, message):
    weights = ingredients[1] / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    output = tmp_path / "soup"
    result = run_merge(merge_argv(ingredients, output), cli_env)
    assert_one_line_error(result, str(weights), message)
    assert not output.exists() and leftovers(tmp_path) == []


def limit_file_size(max_bytes: int):
    """preexec_fn: a file-size limit, how a test simulates a disk that fills up (writes fail with EFBIG)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


def test_full_disk_during_a_merge_is_one_line_and_leaves_nothing(ingredients, tmp_path, cli_env):
    output = tmp_path / "soup"
    size = (ingredients[0] / "model.safetensors").stat().st_size
    result = run_merge(merge_argv(ingredients, output), cli_env, preexec_fn=limit_file_size(size // 2))
    assert_one_line_error(result, str(output))
    assert not output.exists() and leftovers(tmp_path) == []
    assert run_merge(merge_argv(ingredients, output), cli_env).returncode == 0  # room again: the rerun works


def test_full_disk_during_a_sweep_point_is_one_line_and_leaves_no_ingredient(tiny_bert_dir, tmp_path, cli_env):
    from sweep_helpers import tiny_flags, write_tiny_rte

    out = tmp_path / "sweep"
    flags = tiny_flags(tiny_bert_dir, write_tiny_rte(tmp_path / "glue"), out, "--grid", "seed=0")
    size = (Path(tiny_bert_dir) / "model.safetensors").stat().st_size
    command = [sys.executable, str(Path(__file__).parents[1] / "scripts" / "sweep.py"), *flags]
    result = subprocess.run(
        command, capture_output=True, text=True, env=cli_env, timeout=300, preexec_fn=limit_file_size(size // 2)
    )
    assert_one_line_error(result)
    assert not [p for p in out.glob("*/ingredient.json")] and leftovers(out) == []


def read_only_folder(tmp_path: Path) -> Path:
    """A folder nobody may write into: a 0555 folder, or, for root (who ignores permission bits), sysfs."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        return folder
    try:
        (Path("/sys") / f"hf_soup-probe-{os.getpid()}").mkdir()
    except OSError:
        return Path("/sys")
    pytest.skip("running as root and /sys is writable: no read-only folder to test with")


def test_read_only_output_folder_is_one_line_and_writes_nothing(ingredients, tmp_path, cli_env):
    read_only = read_only_folder(tmp_path)
    before = sorted(p.name for p in read_only.iterdir())
    output = read_only / f"soup-{os.getpid()}"
    result = run_merge(merge_argv(ingredients, output), cli_env)
    assert_one_line_error(result, str(read_only), "not writable")
    assert sorted(p.name for p in read_only.iterdir()) == before
