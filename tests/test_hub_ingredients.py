"""Ingredients from the Hub (`--ingredients ns/a ns/b@v1 ./local`) against the local Hub server.

The merge runs in subprocesses (HF_ENDPOINT is read when huggingface_hub is imported); the repos are
uploaded in-process with an explicit endpoint. Failures (404, no such revision, 401, private,
offline, pickled-only) run in one driver process to keep the file fast.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import huggingface_hub
import pytest
import torch
from hub_client import client_env
from hub_server import HubServer
from soup_factory import make_ingredient

from hf_soup.hub_ingredients import hub_reference

DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, os, sys
    from hf_soup.errors import cli_main
    from hf_soup.merge import main

    results = []
    for case in json.loads(sys.argv[1]):
        if case.get("token") is not None:
            os.environ["HF_TOKEN"] = case["token"]
        elif "token" in case:
            os.environ.pop("HF_TOKEN", None)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli_main(main, case["argv"])
        results.append({"code": code, "stderr": err.getvalue()})
    print("RESULTS" + json.dumps(results))
    """
)


def run_merges(cases: list[dict], env: dict[str, str]) -> list[dict]:
    completed = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(cases)], env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.split("RESULTS", 1)[1])


def error_line(result: dict) -> str:
    lines = [line for line in result["stderr"].strip().splitlines() if line.startswith("error: ")]
    assert result["code"] == 2 and len(lines) == 1 and "Traceback" not in result["stderr"], result["stderr"]
    return lines[0]


@pytest.fixture
def hub_repos(tmp_path, tokenizer_dir, online):
    """ns/a (main), ns/b (branch v1 = the folder b; main moved on to another model), ns/private,
    ns/pickled (only pytorch_model.bin); and the local folders they hold."""
    from safetensors.torch import load_file

    local = {name: make_ingredient(tmp_path / "local" / name, tokenizer_dir, noise_seed=seed, with_record=False)
             for name, seed in (("a", 1), ("b", 2), ("b2", 3))}  # fmt: skip
    pickled = shutil.copytree(local["a"], tmp_path / "local" / "pickled")
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with HubServer(tmp_path / "hub") as hub:
        api = huggingface_hub.HfApi(endpoint=hub.endpoint, token=hub.token)
        for repo, folder, private in (("ns/a", "a", False), ("ns/b", "b", False), ("ns/private", "a", True)):
            api.create_repo(repo, private=private)
            api.upload_folder(repo_id=repo, folder_path=local[folder])
        api.create_branch("ns/b", branch="v1")
        api.upload_folder(repo_id="ns/b", folder_path=local["b2"])  # main moves on; v1 keeps b
        api.create_repo("ns/pickled")
        api.upload_folder(repo_id="ns/pickled", folder_path=pickled)
        yield hub, local, pickled


def test_hub_ingredients_merge_to_the_same_bytes_as_local_folders(tmp_path, cli_env, hub_repos):
    hub, local, _ = hub_repos
    env = client_env(cli_env, hub, tmp_path / "home")
    common = ["--recipe", "uniform", "--skip_scoring", "--output"]
    cases = [
        {"argv": ["--ingredients", "ns/a", "ns/b@v1", *common, str(tmp_path / "from-hub")]},
        {"argv": ["--ingredients", str(local["a"]), str(local["b"]), *common, str(tmp_path / "from-disk")]},
        {"argv": ["--ingredients", "ns/a", str(local["b"]), *common, str(tmp_path / "mixed")]},
        {"argv": ["--ingredients", "ns/a", "ns/a@main", *common, str(tmp_path / "twice")]},
    ]
    results = run_merges(cases, env)
    assert [r["code"] for r in results[:3]] == [0, 0, 0], results
    weights = (tmp_path / "from-disk" / "model.safetensors").read_bytes()
    assert (tmp_path / "from-hub" / "model.safetensors").read_bytes() == weights  # bit-identical
    assert (tmp_path / "mixed" / "model.safetensors").read_bytes() == weights
    rows = json.loads((tmp_path / "from-hub" / "soup.json").read_text())["ingredients"]
    v1 = hub.commits("ns/b", "v1")[0]["oid"]
    assert v1 != hub.commits("ns/b")[0]["oid"]  # the revision, not main, was merged
    assert [row["name"] for row in rows] == ["ns/a", "ns/b@v1"]
    assert rows[0]["hub"] == {"repo_id": "ns/a", "revision": None, "commit": hub.commits("ns/a")[0]["oid"]}
    assert rows[1]["hub"] == {"repo_id": "ns/b", "revision": "v1", "commit": v1}
    snapshot = next((tmp_path / "home").rglob("snapshots/*/config.json")).parent
    assert {p.name for p in snapshot.iterdir()} == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    assert "ns/a and ns/a@main are the same folder" in error_line(results[3])
    assert not (tmp_path / "twice").exists()


def test_hub_failures_are_one_line_and_write_nothing(tmp_path, cli_env, hub_repos):
    hub, _, _ = hub_repos
    env = client_env(cli_env, hub, tmp_path / "home")

    def case(*ingredients, token=None, allow_pickle=False, output="soup"):
        argv = [
            "--ingredients",
            *ingredients,
            "--recipe",
            "uniform",
            "--skip_scoring",
            "--output",
            str(tmp_path / output),
        ]
        return {
            "argv": argv + (["--allow_pickle"] if allow_pickle else []),
            **({"token": token} if token is not False else {}),
        }

    wrong = "hf_" + "x" * 30
    results = run_merges(
        [
            case("ns/missing", "ns/a"),
            case("ns/a", "ns/b@no-such-branch"),
            case("ns/a", "ns/private", token=wrong),
            case("ns/a", "ns/private", token=""),
            case("ns/a", "runs/rte"),  # a missing local folder with a Hub-like name
            case("ns/a", "ns/pickled", token=hub.token),
            case("ns/a", "ns/pickled", allow_pickle=True, output="pickled-ok"),
        ],
        env,
    )
    assert "ns/missing: not a local folder, and" in error_line(
        results[0]
    ) and "no model repo ns/missing (404)" in error_line(results[0])
    assert "ns/b@no-such-branch: ns/b on" in error_line(results[1]) and "no revision 'no-such-branch'" in error_line(
        results[1]
    )
    assert "authentication failed (401)" in error_line(results[2])
    assert "no model repo ns/private (401) (or it is private" in error_line(results[3])
    assert "runs/rte: not a local folder, and" in error_line(results[4])
    assert "no safetensors weights in ns/pickled" in error_line(results[5]) and "--allow_pickle" in error_line(
        results[5]
    )
    assert results[6]["code"] == 0, results[6]["stderr"]
    assert not (tmp_path / "soup").exists() and not list(tmp_path.glob("soup.lock"))
    for result in results:
        assert hub.token not in result["stderr"] and wrong not in result["stderr"]


def test_offline_is_one_line_until_the_snapshot_is_cached(tmp_path, cli_env, hub_repos):
    hub, _, _ = hub_repos
    env = client_env(cli_env, hub, tmp_path / "home")
    argv = ["--ingredients", "ns/a", "ns/b@v1", "--recipe", "uniform", "--skip_scoring", "--output"]
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    first = run_merges([{"argv": [*argv, str(tmp_path / "s1")]}], offline)[0]
    assert "ns/a: not a local folder, and HF_HUB_OFFLINE is set" in error_line(first)
    assert run_merges([{"argv": [*argv, str(tmp_path / "s2")]}], env)[0]["code"] == 0  # online: downloads
    assert run_merges([{"argv": [*argv, str(tmp_path / "s3")]}], offline)[0]["code"] == 0  # then offline works


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("org/model", ("org/model", None)),
        ("org/model@v1.0", ("org/model", "v1.0")),
        ("bert-base-uncased", ("bert-base-uncased", None)),
        ("./org/model", None),
        ("/abs/model", None),
        ("runs/rte/", None),
        ("a/b/c", None),
        ("org/model@", None),
        ("runs/*", None),
    ],
)
def test_what_counts_as_a_hub_id(argument, expected):
    assert hub_reference(argument) == expected


def test_an_existing_folder_is_local_even_with_a_hub_like_name(tmp_path, monkeypatch):
    (tmp_path / "org" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert hub_reference("org/model") is None
