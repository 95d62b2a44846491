"""Real MiniLM, real SST-2 rows, real out-of-distribution reviews (amazon, imdb): the merge's extra
test scores, calibration and temperature-folded soup checked against plain evaluation loops."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_soup.calibration import calibration_metrics
from hf_soup.data import DataArguments, load_splits
from hf_soup.errors import cli_main
from hf_soup.merge import main

from conftest import shared_dir  # isort: skip
from trainer_ingredients import train_callback_ingredients  # isort: skip

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MAX_LENGTH = 64
ROWS = 120  # of each extra set: enough rows to disagree, few enough for a loaded CPU


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    import pandas as pd

    folder = shared_dir() / "datasets" / "sentiment_domains"
    if not (folder / "amazon.csv").is_file() or not (folder / "imdb.csv").is_file():
        pytest.skip(f"out-of-distribution reviews not found at {folder}")
    out = tmp_path_factory.mktemp("domains")
    for name in ("amazon", "imdb"):
        pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False).head(ROWS).to_csv(
            out / f"{name}.csv", index=False
        )
    return out


@pytest.fixture(scope="module")
def sst2_sweep(tmp_path_factory, minilm_dir, glue_dir):
    data = DataArguments(
        task="sst2", glue_dir=str(glue_dir), heldout_size=96, max_train_samples=160, max_test_samples=96
    )
    return train_callback_ingredients(tmp_path_factory.mktemp("sst2-sweep"), minilm_dir, load_splits(data), MAX_LENGTH)


def plain_logits(folder, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), 32):
            batch = tokenizer(
                texts[start : start + 32], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt"
            )
            out.append(model(**batch).logits.double().numpy())
    return np.concatenate(out)


def test_minilm_sst2_soup_on_amazon_and_imdb(sst2_sweep, domains, tmp_path, capsys):
    import pandas as pd

    output, predictions = tmp_path / "soup", tmp_path / "p.npz"
    argv = [
        "--ingredients", str(sst2_sweep), "--recipe", "uniform", "--output", str(output), "--calibrate",
        "temperature", "--predictions_file", str(predictions), "--extra_test_files",
        f"amazon={domains / 'amazon.csv'}", f"imdb={domains / 'imdb.csv'}",
    ]  # fmt: skip
    code = cli_main(main, argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    soup = json.loads((output / "soup.json").read_text())
    saved = np.load(predictions)
    block = soup["temperature"]
    for name in ("amazon", "imdb"):
        frame = pd.read_csv(domains / f"{name}.csv", dtype=str, keep_default_na=False)
        labels = frame["label"].astype(int).to_numpy()
        # the uniform soup written to disk is the calibrated one: its logits × T are the soup's
        calibrated = plain_logits(output, list(frame["sentence"]))
        np.testing.assert_allclose(calibrated * block["T"], saved[f"uniform@{name}"], rtol=1e-3, atol=2e-3)
        accuracy = float(np.mean(calibrated.argmax(-1) == labels))
        assert soup["results"]["soup"][f"extra:{name}"]["accuracy"] == pytest.approx(accuracy)
        for row in soup["ingredients"]:
            logits = plain_logits(row["path"], list(frame["sentence"]))
            assert row[f"extra:{name}"]["accuracy"] == pytest.approx(float(np.mean(logits.argmax(-1) == labels)))
            found = calibration_metrics(logits, labels)
            assert row["calibration"][f"extra:{name}"]["ece"] == pytest.approx(found["ece"], abs=2e-3)
        assert block[f"extra:{name}"]["after"]["nll"] == pytest.approx(
            calibration_metrics(calibrated, labels)["nll"], abs=2e-3
        )
        assert "estimate" in soup["results"]["uniform"]["extra_test_gains"][name]
    assert soup["inference_speed"]["ensemble_cost"] > 1.5  # three MiniLMs against one
    assert "amazon" in captured.out and "imdb" in captured.out and "temperature T =" in captured.out
