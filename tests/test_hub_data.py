"""A Hub dataset id through the local Hub server: the sweep records the commit it resolved to, and
the merge, with no data flags, rebuilds the splits from exactly that commit after the dataset moved on.

Every client runs in a subprocess (HF_ENDPOINT is read when huggingface_hub is imported). An
unreachable Hub in offline mode is tested in test_user_data.py (a closed port only adds the client's
retry back-off, about 25 s, to the same one-line error).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from hub_client import client_env
from hub_server import HubServer

REPO = "ns/topics"
UPLOAD = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from huggingface_hub import HfApi

    rows, folder = int(sys.argv[1]), sys.argv[2]
    api = HfApi()
    api.create_repo("ns/topics", repo_type="dataset", exist_ok=True)
    words = ["sport game team", "market bank price", "film music stage"]
    for split, n in (("train", rows), ("test", 30)):
        frame = pd.DataFrame({"text": [f"{words[i % 3]} {split} {i}" for i in range(n)], "label": [i % 3 for i in range(n)]})
        frame.to_parquet(f"{folder}/{split}.parquet")
        api.upload_file(path_or_fileobj=f"{folder}/{split}.parquet", path_in_repo=f"data/{split}-00000-of-00001.parquet",
                        repo_id="ns/topics", repo_type="dataset")
    print(api.dataset_info("ns/topics").sha)
    """
)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


def test_hub_dataset_revision_travels_with_the_ingredients(tmp_path, tiny_bert_dir, cli_env):
    runs, soup_dir = tmp_path / "runs", tmp_path / "soup"
    with HubServer(tmp_path / "hub") as hub:
        env = client_env(cli_env, hub, tmp_path / "home", xet=False)
        env.update(OMP_NUM_THREADS="1", HF_DATASETS_CACHE=str(tmp_path / "home" / "datasets"))
        first = run(["-c", UPLOAD, "120", str(tmp_path)], env).stdout.split()[-1]
        sweep = [
            "-m", "hf_soup.sweep", "--model", str(tiny_bert_dir), "--dataset_name", REPO, "--output_dir", str(runs),
            "--heldout_size", "30", "--max_seq_length", "16", "--max_steps", "2", "--disable_tqdm", "true",
            "--grid", "seed=0,1",
        ]  # fmt: skip
        run(sweep, env)
        record = json.loads(next(runs.glob("*/ingredient.json")).read_text())
        assert record["data"]["source"] == {"kind": "hub", "dataset_name": REPO, "config": None, "revision": first}
        assert record["data"]["task"]["validation_splits"] == ["test"]  # the labelled `test` split is the test

        second = run(["-c", UPLOAD, "150", str(tmp_path)], env).stdout.split()[-1]  # the dataset moves on
        assert second != first
        merge = ["-m", "hf_soup.merge", "--ingredients", str(runs), "--recipe", "uniform", "--output", str(soup_dir)]
        fresh = client_env(cli_env, hub, tmp_path / "fresh-home", xet=False)
        fresh["HF_DATASETS_CACHE"] = str(tmp_path / "fresh-home" / "datasets")
        run(merge, fresh)  # no data flags, empty caches
        soup = json.loads((soup_dir / "soup.json").read_text())
        assert (
            soup["data"]["source"]["revision"] == first
            and soup["split"]["fingerprint"] == record["split"]["fingerprint"]
        )
        assert soup["data"]["sizes"]["train"] + soup["data"]["sizes"]["heldout"] == 120  # the first commit's rows

        missing = subprocess.run(
            [sys.executable, "-m", "hf_soup.data", "--dataset_name", "ns/nothing"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1] == (
            "error: dataset_name ns/nothing: cannot load it from the Hub (DatasetNotFoundError: Dataset 'ns/nothing' "
            "doesn't exist on the Hub or cannot be accessed.)"
        )
