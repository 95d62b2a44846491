"""--calibrate temperature: T fitted on held-out and folded into the head; the written soup is a plain model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from soup_factory import run_merge
from test_extra_tests import sweep  # noqa: F401 - the fixture

from hf_soup.errors import SoupError
from hf_soup.families import LABEL_WORDS_KEY
from hf_soup.temperature import check_request, fit_temperature


def logits_of(folder, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.double().numpy()


def test_calibrated_soup_is_the_soup_divided_by_t_through_from_pretrained(sweep, tmp_path, capsys):  # noqa: F811
    runs = sweep[0]
    common = ["--ingredients", runs, "--recipe", "uniform"]
    code, _, err = run_merge([*common, "--output", tmp_path / "plain"], capsys)
    assert code == 0, err
    code, out, err = run_merge([*common, "--output", tmp_path / "cal", "--calibrate", "temperature"], capsys)
    assert code == 0, err
    soup = json.loads((tmp_path / "cal" / "soup.json").read_text())
    block = soup["temperature"]
    assert block["layer"] == "classifier" and block["T"] > 0 and block["fitted_on"] == "heldout"
    assert block["heldout_nll"]["after"] <= block["heldout_nll"]["before"] + 1e-12
    assert {"before", "after", "ensemble"} <= set(block["test"])
    texts = ["the cat sat on the mat", "a dog ran", "not the dog", "is a cat on a mat"]
    plain, calibrated = logits_of(tmp_path / "plain", texts), logits_of(tmp_path / "cal", texts)
    np.testing.assert_allclose(calibrated, plain / block["T"], rtol=1e-5, atol=1e-6)
    assert (calibrated.argmax(-1) == plain.argmax(-1)).all()
    assert f"temperature T = {block['T']:.4f}" in out
    assert "### Temperature calibration" in (tmp_path / "cal" / "README.md").read_text()


def test_fitted_t_minimises_nll():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=400)
    logits = rng.normal(size=(400, 3))
    logits[np.arange(400), labels] += 1.0
    overconfident = logits * 4.0  # the true logits times 4: T should come out near 4
    t = fit_temperature(overconfident, labels)
    assert 3.0 < t < 5.5

    def nll(value):
        return float(torch.nn.functional.cross_entropy(torch.tensor(overconfident / value), torch.tensor(labels)))

    assert nll(t) <= min(nll(t * 0.95), nll(t * 1.05))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"problem_type": "regression", "id2label": {0: "score"}}, "a regression soup"),
        ({"id2label": {0: "score"}}, "a regression soup"),
        ({LABEL_WORDS_KEY: ["yes", "no"], "is_encoder_decoder": True}, "text-to-text"),
    ],
)
def test_refused_before_any_work(config, message):
    with pytest.raises(SoupError, match=message):
        check_request("temperature", config)


def test_bad_flags_are_one_line(sweep, tmp_path, capsys):  # noqa: F811
    runs = sweep[0]
    for flags, message in (
        (["--calibrate", "platt"], "--calibrate 'platt': must be one of temperature"),
        (["--calibrate", "temperature", "--recipe", "uniform", "--skip_scoring"], "cannot run with --skip_scoring"),
    ):
        code, _, err = run_merge(["--ingredients", runs, "--output", tmp_path / "s", *flags], capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "s").exists()
