"""A fake SLURM on PATH for the launcher tests: `sbatch`, `sacct`, `squeue`, `scancel`, `srun`.

Nothing runs: `sbatch` keeps the script it was given (`<root>/sbatch/<job id>.sh`) and answers
`Submitted batch job <id>`; the job states live in `<root>/states.json`, which the test writes.
A state may be a list: each `sacct` call moves a job one step along it (the last one sticks), so a
watching launcher sees PENDING -> RUNNING -> COMPLETED without any timing in the test.
`sacct` prints what submitit's own reader expects (`--parsable2`, JobID|State|NodeList); `squeue`
lists only jobs that are still queued or running, as the real one does. Set `FAKE_SACCT_DOWN=1`
for a cluster without accounting, `FAKE_SBATCH_FAIL=<message>` for a refused submission.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

_SCRIPTS = {
    "sbatch": r"""
root = Path(os.environ["FAKE_SLURM"])
if os.environ.get("FAKE_SBATCH_FAIL"):
    print("sbatch: error: " + os.environ["FAKE_SBATCH_FAIL"], file=sys.stderr)
    sys.exit(1)
script = Path(sys.argv[-1]).read_text()
counter = root / "next_id"
job = int(counter.read_text()) if counter.exists() else 1000
counter.write_text(str(job + 1))
(root / "sbatch").mkdir(exist_ok=True)
(root / "sbatch" / f"{job}.sh").write_text(script)
array = re.search(r"^#SBATCH --array=0-(\d+)", script, re.M)
states = load_states(root)
for key in ([f"{job}_{i}" for i in range(int(array[1]) + 1)] if array else [str(job)]):
    states[key] = "PENDING"
save_states(root, states)
print(f"Submitted batch job {job}")
""",
    "sacct": r"""
root = Path(os.environ["FAKE_SLURM"])
log_call(root, "sacct")
if os.environ.get("FAKE_SACCT_DOWN"):
    print("sacct: error: Slurm accounting storage is disabled", file=sys.stderr)
    sys.exit(1)
wanted = {sys.argv[i + 1] for i, arg in enumerate(sys.argv) if arg == "-j"}
states = load_states(root)
print("JobID|State|NodeList")
for key, state in states.items():
    if key.split("_")[0] in wanted:
        now = state[0] if isinstance(state, list) else state
        print(f"{key}|{now}|node{key[-1]}")
        print(f"{key}.batch|{now}|node{key[-1]}")
        if isinstance(state, list) and len(state) > 1:
            states[key] = state[1:]
save_states(root, states)
""",
    "squeue": r"""
root = Path(os.environ["FAKE_SLURM"])
log_call(root, "squeue")
wanted = set(sys.argv[sys.argv.index("--jobs") + 1].split(","))
for key, state in load_states(root).items():
    now = state[0] if isinstance(state, list) else state
    if key.split("_")[0] in wanted and now in ("PENDING", "RUNNING"):
        print(f"{key}|{now}")
""",
    "scancel": r"""
root = Path(os.environ["FAKE_SLURM"])
log_call(root, "scancel " + " ".join(sys.argv[1:]))
states = load_states(root)
for job in sys.argv[1:]:
    states[job] = "CANCELLED by 0"
save_states(root, states)
""",
    "srun": "sys.exit(0)\n",
    "scontrol": "sys.exit(0)\n",
}

_PRELUDE = """
import json, os, re, sys
from pathlib import Path

def load_states(root):
    path = root / "states.json"
    return json.loads(path.read_text()) if path.exists() else {}

def save_states(root, states):
    (root / "states.json.tmp").write_text(json.dumps(states))
    os.replace(root / "states.json.tmp", root / "states.json")

def log_call(root, line):
    with open(root / "calls.log", "a") as handle:
        handle.write(line + "\\n")
"""


class FakeSlurm:
    """The fake cluster's state folder and the PATH entry that puts its commands first."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        for name, body in _SCRIPTS.items():
            path = self.bin / name
            path.write_text(f"#!{sys.executable}\n{_PRELUDE}\n{body}")
            path.chmod(0o755)

    def env(self, monkeypatch) -> None:
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_SLURM", str(self.root))

    def scripts(self) -> dict[str, str]:
        """job id -> the sbatch script submitted under it, in submission order."""
        folder = self.root / "sbatch"
        files = sorted(folder.glob("*.sh"), key=lambda p: int(p.stem)) if folder.is_dir() else []
        return {p.stem: p.read_text() for p in files}

    def set_states(self, **states: str | list[str]) -> None:
        """`set_states(**{"1000_0": ["RUNNING", "COMPLETED"]})`."""
        current = self.states()
        current.update(states)
        (self.root / "states.json").write_text(json.dumps(current))

    def states(self) -> dict[str, str | list[str]]:
        path = self.root / "states.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def calls(self) -> list[str]:
        path = self.root / "calls.log"
        return path.read_text().splitlines() if path.exists() else []


def sbatch_directives(script: str) -> dict[str, str]:
    """`#SBATCH --key=value` lines -> {key: value}."""
    return {m[1]: m[2] for m in re.finditer(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, re.M)}
