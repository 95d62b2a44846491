"""docs/trainer_script.md's whole script runs as written, and what it writes is a valid, mergeable ingredient.

The script is taken from the page itself (its first python block) and run in a fresh process, in a
folder holding the `tickets.csv` / `tickets_test.csv` it names (real SST-2 sentences with string
labels), against a Hub cache holding the real all-MiniLM-L6-v2 under the id the script uses, offline.
A second run changes only the line the page marks as what a run varies; the merge then soups both.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hf_soup.ingredient import read_ingredient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAGE = Path(__file__).resolve().parents[1] / "docs" / "trainer_script.md"
VARIES = "LEARNING_RATE, SEED = 2e-5, 1  # what this run varies"


def page_script() -> str:
    """The page's first python code block."""
    match = re.search(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert match, f"{PAGE}: no python block"
    return match.group(1)


def hub_cache_with(model_id: str, model_dir: Path, cache: Path) -> None:
    """A huggingface_hub cache in which `model_id` resolves (offline) to the files of `model_dir`."""
    repo = cache / f"models--{model_id.replace('/', '--')}"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def write_tickets(glue_dir: Path, folder: Path) -> None:
    """200 training rows and 60 test rows of SST-2 as `text,label` files with the labels as words."""
    with open(glue_dir / "SST-2" / "train.tsv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    names = {"0": "negative", "1": "positive"}
    for name, chunk in (("tickets.csv", rows[:200]), ("tickets_test.csv", rows[200:260])):
        with open(folder / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows([row["sentence"].strip(), names[row["label"]]] for row in chunk)


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def test_the_trainer_script_runs_as_written_and_its_ingredients_merge(tmp_path, minilm_dir, glue_dir, cli_env):
    script = page_script()
    model_id = re.search(r'^BASE_MODEL = "([^"]+)"', script, re.M).group(1)
    assert VARIES in script and "id2label=task.id2label" in script
    assert script.index("torch.manual_seed(HEAD_INIT_SEED)") < script.index("from_pretrained(\n    BASE_MODEL")
    hub_cache_with(model_id, minilm_dir, tmp_path / "hub")
    write_tickets(glue_dir, tmp_path)
    env = {**cli_env, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.setdefault("OMP_NUM_THREADS", "1")
    (tmp_path / "run1.py").write_text(script)
    (tmp_path / "run2.py").write_text(script.replace(VARIES, "LEARNING_RATE, SEED = 2e-5, 2"))
    for name in ("run1.py", "run2.py"):
        run([sys.executable, name], tmp_path, env)

    folders = sorted((tmp_path / "runs" / "mine").iterdir())
    assert [f.name for f in folders] == ["lr2e-05-seed1", "lr2e-05-seed2"]
    for seed, folder in enumerate(folders, start=1):
        assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
        record = read_ingredient(folder)  # validates ingredient.json against its format
        assert record["seed"] == seed and record["head_init_seed"] == 42
        assert record["base_model"]["name_or_path"] == model_id
        assert record["data"]["sizes"]["test"] == 60  # the data description travelled: no flags at merge
        assert 0.0 <= record["metrics"]["heldout"]["primary"] <= 1.0 and "primary" in record["metrics"]["test"]
        config = json.loads((folder / "config.json").read_text())
        assert config["id2label"] == {"0": "negative", "1": "positive"}

    run([sys.executable, "-m", "hf_soup.merge", "--ingredients", "runs/mine", "--recipe", "uniform",
         "--output", "soups/mine"], tmp_path, env)  # fmt: skip
    soup = json.loads((tmp_path / "soups" / "mine" / "soup.json").read_text())
    assert len(soup["ingredients"]) == 2
    assert (tmp_path / "soups" / "mine" / "model.safetensors").is_file()
    assert os.path.isfile(tmp_path / "soups" / "mine" / "README.md")
