"""SentencePiece tokenizers (spm.model, tokenizer.model, spiece.model) survive a merge and a push.

Many Hub repos (DeBERTa-v3, T5, Llama-style models) keep their tokenizer as a SentencePiece model
file with no tokenizer.json; a soup or a push that drops that file cannot be loaded. The model is
trained on the fly with `sentencepiece.SentencePieceTrainer` (no download).
"""

from __future__ import annotations

import io
import json

import pytest
from soup_factory import make_ingredient, tiny_classifier

from hf_soup.errors import cli_main
from hf_soup.merge import main

pytest.importorskip("sentencepiece", reason="pip install sentencepiece (the dev extra)")
pytest.importorskip(
    "google.protobuf", reason="pip install protobuf (the dev extra): transformers reads .model files with it"
)

REPO = "ns/spm-soup"


@pytest.fixture(scope="module")
def spm_model() -> bytes:
    import sentencepiece

    corpus = ["the cat sat on the mat", "a dog is not a cat", "an animal is on the mat", "sentence pairs"] * 40
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=24, pad_id=0, eos_id=1, unk_id=2, bos_id=-1
    )
    return model.getvalue()


@pytest.mark.parametrize(
    ("tokenizer_class", "filename"),
    [("DebertaV2Tokenizer", "spm.model"), ("LlamaTokenizer", "tokenizer.model"), ("T5Tokenizer", "spiece.model")],
)
def test_sentencepiece_files_reach_the_soup_and_the_hub(
    tmp_path, tokenizer_dir, spm_model, glue_dir, online, tokenizer_class, filename, capsys
):
    from hub_server import HubServer
    from transformers import AutoTokenizer

    from hf_soup.publish import publish_folder

    folders = []
    for seed in (1, 2):
        folder = make_ingredient(
            tmp_path / f"sp{seed}", tokenizer_dir, noise_seed=seed, with_record=False,
            model=tiny_classifier(64, noise_seed=seed),
        )  # fmt: skip
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            (folder / name).unlink(missing_ok=True)  # the BERT tokenizer make_ingredient saved
        (folder / filename).write_bytes(spm_model)
        (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": tokenizer_class}))
        folders.append(folder)
    output = tmp_path / "soup"
    argv = ["--ingredients", *folders, "--recipe", "uniform", "--output", output, "--task", "rte"]
    argv += ["--glue_dir", glue_dir, "--heldout_size", "16", "--max_test_samples", "16", "--max_seq_length", "32"]
    assert cli_main(main, [str(a) for a in argv]) == 0, capsys.readouterr().err
    assert (output / filename).read_bytes() == spm_model
    pair = ("the cat sat", "a dog")
    assert AutoTokenizer.from_pretrained(output)(*pair) == AutoTokenizer.from_pretrained(folders[0])(*pair)

    with HubServer(tmp_path / "hub") as hub:
        publish_folder(output, REPO, endpoint=hub.endpoint, token=hub.token, max_attempts=1)
        assert hub.read_file(REPO, filename) == spm_model
