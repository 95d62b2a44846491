import json

import pytest

from hf_soup.errors import SoupError
from hf_soup.ingredient import build_ingredient, is_ingredient, read_ingredient, weights_sha256, write_ingredient


def _record(**overrides):
    fields = dict(
        run_id="lr1e-05_seed0-abc",
        task="rte",
        base_model={"name_or_path": "base", "revision": None, "weights_sha256": "x"},
        head_init_seed=42,
        seed=0,
        hyperparameters={"learning_rate": 1e-5},
        split={"fingerprint": "f"},
        metrics={"heldout": {"accuracy": 0.5, "primary": 0.5}, "test": {"accuracy": 0.4, "primary": 0.4}},
    )
    fields.update(overrides)
    return build_ingredient(**fields)


def test_round_trip(tmp_path):
    record = _record()
    write_ingredient(tmp_path, record)
    assert read_ingredient(tmp_path) == json.loads(json.dumps(record))
    assert record["format"] == "hf_soup.ingredient" and "transformers" in record["versions"]
    assert is_ingredient(tmp_path)


def test_build_refuses_missing_fields():
    with pytest.raises(ValueError, match="missing"):
        build_ingredient(run_id="x")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "other"}', "field 'format'"),
        ('{"format": "hf_soup.ingredient", "format_version": 99}', "format_version"),
        ('{"format": "hf_soup.ingredient", "format_version": 1}', "missing field 'run_id'"),
    ],
)
def test_read_names_file_and_field(tmp_path, content, message):
    (tmp_path / "ingredient.json").write_text(content)
    with pytest.raises(SoupError, match=message) as info:
        read_ingredient(tmp_path)
    assert "ingredient.json" in str(info.value)
    assert not is_ingredient(tmp_path)


def test_missing_heldout_primary(tmp_path):
    write_ingredient(tmp_path, _record(metrics={"heldout": {"accuracy": 0.5}}))
    with pytest.raises(SoupError, match=r"metrics\.heldout\.primary"):
        read_ingredient(tmp_path)


def test_weights_sha256(tmp_path):
    assert weights_sha256(tmp_path) is None
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    first = weights_sha256(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"abd")
    assert weights_sha256(tmp_path) != first


def test_a_file_is_not_an_ingredient(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    assert not is_ingredient(tmp_path / "weights.bin")
