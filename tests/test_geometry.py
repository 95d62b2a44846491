"""The geometry of the ingredients: cosines of their updates from the shared start, and the
two-ingredient soups, checked against a direct computation from the weight files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from soup_factory import make_ingredient, run_merge, unmoved_classifier
from sweep_helpers import one_torch_thread  # noqa: F401 - autouse: tiny models, one thread

from hf_soup.geometry import cosines_from_gram, sample_pairs, update_gram
from hf_soup.ingredient import weights_sha256


def _cosine_from_files(a, b, start) -> float:
    """cos(θa − θ0, θb − θ0) over every floating tensor, read with safetensors + numpy, float64."""
    from safetensors.numpy import load_file

    left, right, origin = (load_file(folder / "model.safetensors") for folder in (a, b, start))
    names = [n for n in origin if np.issubdtype(origin[n].dtype, np.floating) and n in left]
    da = np.concatenate([left[n].astype(np.float64).ravel() - origin[n].astype(np.float64).ravel() for n in names])
    db = np.concatenate([right[n].astype(np.float64).ravel() - origin[n].astype(np.float64).ravel() for n in names])
    return float(da @ db / (np.linalg.norm(da) * np.linalg.norm(db)))


def test_streamed_gram_matches_the_direct_product_whatever_the_chunk():
    generator = torch.Generator().manual_seed(0)
    start = {"w": torch.randn(7, 5, generator=generator), "b": torch.randn(5, generator=generator)}
    start["steps"] = torch.arange(4)  # integer: not a weight, left out
    ingredients = [{k: v + 0.1 * torch.randn(v.shape, generator=generator) for k, v in start.items()} for _ in range(4)]
    for ingredient in ingredients:
        ingredient["steps"] = torch.arange(4)
    flat = np.stack(
        [np.concatenate([(i[k].double() - start[k].double()).ravel().numpy() for k in ("w", "b")]) for i in ingredients]
    )
    expected = flat @ flat.T
    for chunk_bytes in (8, 8 * 4 * 5, 1 << 20):  # one row at a time, a few rows, whole tensors
        gram, names, elements = update_gram(ingredients, start, chunk_bytes=chunk_bytes)
        assert sorted(names) == ["b", "w"] and elements == 40
        np.testing.assert_allclose(gram, expected, rtol=1e-12)
    cosines = cosines_from_gram(expected)
    assert cosines[1][2] == pytest.approx(expected[1, 2] / math.sqrt(expected[1, 1] * expected[2, 2]))
    assert cosines_from_gram(np.zeros((2, 2)))[0][1] is None  # no update, no direction


def test_pairs_are_sampled_with_the_seed():
    assert sample_pairs(3, 10, 0) == [(0, 1), (0, 2), (1, 2)]
    drawn = sample_pairs(8, 5, seed=4)
    assert len(drawn) == 5 == len(set(drawn)) and drawn == sample_pairs(8, 5, seed=4) != sample_pairs(8, 5, seed=5)


def test_merge_records_the_cosines_of_the_updates_from_the_recorded_start(warm_sweep, tmp_path, capsys):
    output = tmp_path / "soup"
    code, out, err = run_merge(["--ingredients", warm_sweep, "--output", output, "--pairwise_soups", "2"], capsys)
    assert code == 0, err
    soup = json.loads((output / "soup.json").read_text())
    block = soup["geometry"]
    start = warm_sweep / ".shared" / "warm-start-x"
    assert block["start"] == {
        "kind": "warm-start",
        "name": ".shared/warm-start-x",
        "weights_sha256": weights_sha256(start),
    }
    names = block["ingredients"]
    assert len(names) == 3 and len(block["cosines"]) == 3 and block["tensors"] > 0
    direct = _cosine_from_files(warm_sweep / names[0], warm_sweep / names[2], start)
    assert block["cosines"][0][2] == pytest.approx(direct, abs=1e-9)
    assert block["cosines"][2][0] == block["cosines"][0][2] and block["cosines"][1][1] == pytest.approx(1.0)
    pairs = [block["cosines"][i][j] for i, j in ((0, 1), (0, 2), (1, 2))]
    mean_angle = np.mean([math.degrees(math.acos(c)) for c in pairs])
    assert block["mean_pairwise_angle_degrees"] == pytest.approx(mean_angle)
    pairwise = block["pairwise_soups"]
    assert pairwise["requested"] == 2 and pairwise["pairs_total"] == 3 and len(pairwise["pairs"]) == 2
    heldout = {row["name"]: row["heldout"]["primary"] for row in soup["ingredients"]}
    for pair in pairwise["pairs"]:
        assert pair["pair_mean"] == pytest.approx((heldout[pair["a"]] + heldout[pair["b"]]) / 2)
        assert pair["gain"] == pytest.approx(pair["soup"] - pair["pair_mean"])
        i, j = names.index(pair["a"]), names.index(pair["b"])
        assert pair["angle_degrees"] == pytest.approx(math.degrees(math.acos(block["cosines"][i][j])))
    assert "geometry: mean angle" in out and "pairwise soups: 2 of 3 pairs" in out
    card = (output / "README.md").read_text()
    assert "Geometry of the ingredients" in card and "two-ingredient soups were scored" in card
    assert str(tmp_path) not in json.dumps(block)  # soup.json is published: no local path


def test_two_plain_ingredients_with_an_anchor_and_without(tmp_path, tokenizer_dir, glue_dir, capsys):
    """With --anchor the pair's soup is the uniform soup (scored twice, by two code paths); without a
    known start the geometry is skipped, saying why, and the merge still succeeds."""
    plain = [make_ingredient(tmp_path / f"plain{i}", tokenizer_dir, noise_seed=i, with_record=False) for i in (1, 2)]
    anchor = make_ingredient(
        tmp_path / "start", tokenizer_dir, noise_seed=0, with_record=False, model=unmoved_classifier(tokenizer_dir)
    )
    capsys.readouterr()
    data = ["--task", "rte", "--glue_dir", glue_dir, "--heldout_size", "48", "--max_test_samples", "40"]
    argv = ["--ingredients", *plain, *data, "--recipe", "uniform", "--anchor", anchor, "--pairwise_soups", "5"]
    code, _, err = run_merge([*argv, "--output", tmp_path / "with"], capsys)
    assert code == 0, err
    soup = json.loads((tmp_path / "with" / "soup.json").read_text())
    assert soup["geometry"]["start"]["kind"] == "explicit" and soup["geometry"]["start"]["name"] == "start"
    assert soup["geometry"]["cosines"][0][1] == pytest.approx(_cosine_from_files(*plain, anchor), abs=1e-9)
    (pair,) = soup["geometry"]["pairwise_soups"]["pairs"]
    assert pair["soup"] == soup["results"]["uniform"]["heldout"]["primary"]
    code, out, err = run_merge(["--ingredients", *plain, *data, "--output", tmp_path / "without"], capsys)
    assert code == 0, err
    skipped = json.loads((tmp_path / "without" / "soup.json").read_text())["geometry"]
    assert "no ingredient.json" in skipped["skipped"] and "geometry: not computed" in out
    code, _, err = run_merge(["--ingredients", *plain, *data, "--no_geometry", "--output", tmp_path / "off"], capsys)
    assert code == 0 and "geometry" not in json.loads((tmp_path / "off" / "soup.json").read_text())


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--pairwise_soups", "-1"], "--pairwise_soups -1"),
        (["--pairwise_soups", "3", "--skip_scoring", "--recipe", "uniform"], "drop --skip_scoring"),
        (["--pairwise_soups", "3", "--no_geometry"], "drop --no_geometry"),
    ],
)
def test_pairwise_flags_are_refused_before_any_work(tmp_path, flags, message, capsys):
    code, _, err = run_merge(["--ingredients", tmp_path / "x", "--output", tmp_path / "out", *flags], capsys)
    assert code == 2 and message in err and not (tmp_path / "out").exists()
