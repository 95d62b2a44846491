"""Your own data, end to end: sweep -> merge with no data flags -> card -> local Hub -> from_pretrained.

* A CSV nobody has seen (header, an id column, integer labels, six classes, its own test file) on a
  tiny random BERT: the test accuracy soup.json records must equal an evaluation of the published
  soup done here independently (plain transformers + scikit-learn, labels compared as text through
  the model's own id2label).
* AG News (../shared/datasets/ag_news/news.csv: one CSV, no split, 1-based labels, title +
  description) on the real MiniLM through `scripts/demo.py` with data flags, subsampled hard.
* A Hub dataset id through the local Hub server: the sweep records the commit it resolved to, and
  the merge, with no data flags, rebuilds the splits from exactly that commit after the dataset moved on.

Every client runs in a subprocess (HF_ENDPOINT is read when huggingface_hub is imported). An
unreachable Hub in offline mode is tested in test_data_load.py (a closed port only adds the client's
retry back-off, about 25 s, to the same one-line error).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_dir
from hub_client import client_env
from hub_server import HubServer
from huggingface_hub import ModelCard
from sweep_helpers import load_sweep_main, one_torch_thread  # noqa: F401  (fixture)

from hf_soup.errors import cli_main
from hf_soup.merge import DEFAULT_RECIPE
from hf_soup.merge import main as merge_main

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOPICS = {
    11: "the team won the game and the players ran",
    12: "the market price of oil and the bank rate",
    13: "the new computer software and the internet",
    14: "the film music and the actor on stage",
    15: "the doctor said the health of the patient",
    16: "the rain and the wind and the cold weather",
}
INDEPENDENT_EVAL = textwrap.dedent(
    """
    import csv, json, sys
    import torch
    from sklearn.metrics import accuracy_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    repo, test_file = sys.argv[1], sys.argv[2]
    model = AutoModelForSequenceClassification.from_pretrained(repo).eval()
    tokenizer = AutoTokenizer.from_pretrained(repo)
    with open(test_file, newline="") as handle:
        rows = list(csv.DictReader(handle))
    predicted = []
    with torch.inference_mode():
        for row in rows:  # one at a time: no padding, nothing shared with hf_soup's scorer
            inputs = tokenizer(row["text"], truncation=True, max_length=32, return_tensors="pt")
            predicted.append(model.config.id2label[int(model(**inputs).logits.argmax(-1))])
    print(json.dumps({"accuracy": accuracy_score([row["label"] for row in rows], predicted),
                      "id2label": model.config.id2label}))
    """
)


def write_topic_csv(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    labels = list(TOPICS)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        for i in range(n):
            label = labels[int(rng.integers(len(labels)))]
            words = TOPICS[label].split()
            text = " ".join(rng.choice(words, size=int(rng.integers(4, 9))))
            writer.writerow([f"row-{seed}-{i}", text, label])
    return path


def test_unseen_six_class_csv_sweep_merge_publish_and_independent_accuracy(tmp_path, tiny_bert_dir, cli_env):
    train = write_topic_csv(tmp_path / "tickets.csv", 240, seed=0)
    test = write_topic_csv(tmp_path / "tickets_test.csv", 60, seed=1)
    runs, soup_dir = tmp_path / "runs", tmp_path / "soup"
    sweep = load_sweep_main()
    flags = [
        "--model", str(tiny_bert_dir), "--train_file", str(train), "--test_file", str(test),
        "--text_column_names", "text", "--output_dir", str(runs), "--heldout_size", "40",
        "--max_seq_length", "32", "--per_device_train_batch_size", "16", "--learning_rate", "1e-3",
        "--max_steps", "12", "--disable_tqdm", "true", "--grid", "seed=0,1",
    ]  # fmt: skip
    assert sweep(flags) == 0
    record = json.loads(next(runs.glob("*/ingredient.json")).read_text())
    assert record["data"]["task"]["label_values"] == [11, 12, 13, 14, 15, 16]
    assert record["data"]["source"]["files"]["test"]["sha256"]

    assert cli_main(merge_main, ["--ingredients", str(runs), "--recipe", "greedy", "--output", str(soup_dir)]) == 0
    soup = json.loads((soup_dir / "soup.json").read_text())
    assert soup["task"] == "tickets" and soup["heldout_disjoint"] is True
    assert soup["data"]["task"]["text_fields"] == ["text"] and soup["data"]["task"]["is_pair"] is False
    assert soup["split"]["test_size"] == 60
    card = ModelCard.load(soup_dir / "README.md")
    assert card.data.datasets is None  # local files have no Hub id
    assert {r.dataset_name for r in card.data.eval_results} == {"tickets.csv, tickets_test.csv"}
    assert {r.dataset_split for r in card.data.eval_results} == {"test"}
    assert "GLUE" not in card.text.split("## Framework versions")[0]
    assert "truncated to 32 tokens" in card.text  # what the independent evaluation below does too

    with HubServer(tmp_path / "hub") as hub:
        env = client_env(cli_env, hub, tmp_path / "home")
        published = subprocess.run(
            [sys.executable, "-m", "hf_soup.publish", str(soup_dir), "--repo_id", "ns/tickets-soup"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert published.returncode == 0, published.stderr[-3000:]
        evaluated = subprocess.run(
            [sys.executable, "-c", INDEPENDENT_EVAL, "ns/tickets-soup", str(test)],
            env=client_env(cli_env, hub, tmp_path / "home2"), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    independent = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert independent["id2label"] == {str(i): str(label) for i, label in enumerate(TOPICS)}
    assert soup["results"]["soup"]["test"]["accuracy"] == independent["accuracy"]


def test_ag_news_through_the_demo_with_data_flags(minilm_dir, tmp_path, cli_env):
    news = shared_dir() / "datasets" / "ag_news" / "news.csv"
    if not news.is_file():
        pytest.skip(f"AG News CSV not found at {news} (expected ../shared/datasets/ag_news/news.csv)")
    out = tmp_path / "demo"
    command = [
        sys.executable, str(PROJECT_ROOT / "scripts" / "demo.py"), "--train_file", str(news),
        "--output_dir", str(out), "--max_train_samples", "160", "--max_steps", "3", "--warm_start_epochs", "0",
        "--heldout_size", "64", "--test_split_size", "64", "--max_seq_length", "48",
        "--grid", "learning_rate=5e-5,1e-4",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=cli_env, timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    for step in ("1/4 sweep", "2/4 merge", "3/4 publish", "4/4 load it back"):
        assert f"--- {step}" in result.stdout, step
    assert "64 rows (1%) were carved from train as the test split" in result.stdout  # announced
    assert "weights identical to" in result.stdout
    predictions = [line for line in result.stdout.splitlines() if line.strip().startswith("-> ")]
    assert len(predictions) == 2 and all(p.split()[1] in {"1", "2", "3", "4"} for p in predictions)

    soup_dir = out / "soups" / f"news-{DEFAULT_RECIPE}"
    soup = json.loads((soup_dir / "soup.json").read_text())
    merge_command = soup["commands"]["merge"]
    assert "--train_file" not in merge_command and "--task" not in merge_command  # no data flags
    task = soup["data"]["task"]
    assert task["label_values"] == [1, 2, 3, 4] and task["text_fields"] == ["title", "description"]
    assert soup["data"]["test"]["test"]["carved"] is True and soup["split"]["test_size"] == 64
    assert soup["heldout_disjoint"] is True
    card = ModelCard.load(soup_dir / "README.md")
    assert card.data.datasets is None and card.data.eval_results[0].dataset_name == "news.csv"
    assert card.data.eval_results[0].metric_name == "accuracy (rows carved from train)"
    assert card.data.eval_results[0].metric_value == soup["results"]["soup"]["test"]["accuracy"]


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
