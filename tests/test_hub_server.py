"""The local Hub server: the real huggingface_hub/transformers clients against it, plus its own guarantees
(auth, private repos, metadata validation, atomic commits, fault injection, bounds)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import pytest
from hub_client import call, client_env
from hub_server import Fault, HubServer, HubUser, validate_metadata


def commit_lines(*items: dict) -> bytes:
    header = {"key": "header", "value": {"summary": "test commit", "description": ""}}
    return b"".join(json.dumps(item).encode() + b"\n" for item in (header, *items))


def regular_file(path: str, content: bytes) -> dict:
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"}}


@pytest.fixture
def hub(tmp_path):
    with HubServer(tmp_path / "hub") as server:
        yield server


def test_loopback_only_and_endpoint(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        HubServer(tmp_path, host="0.0.0.0")
    with HubServer(tmp_path / "h") as server:
        assert server.endpoint.startswith("http://127.0.0.1:")
        assert server.token.startswith("hf_local_")
    with pytest.raises(ValueError, match="action"):
        Fault("/x", action="explode")


def test_auth_private_repos_and_persistence(tmp_path):
    reader = "hf_read_only"
    users = {"hf_alice": HubUser("alice", orgs=("team",)), reader: HubUser("bob", write=False)}
    with HubServer(tmp_path / "hub", users=users) as hub:
        status, headers, _ = call(hub, "POST", "/api/repos/create", {"name": "m"}, token="hf_wrong")
        assert status == 401 and headers["X-Error-Message"] == "Invalid credentials in Authorization header"
        assert (
            call(hub, "POST", "/api/repos/create", {"name": "m", "organization": "other"}, token="hf_alice")[0] == 403
        )
        assert call(hub, "POST", "/api/repos/create", {"name": "m", "organization": "team"}, token=reader)[0] == 403
        status, _, body = call(
            hub,
            "POST",
            "/api/repos/create",
            {"name": "m", "organization": "team", "visibility": "private"},
            token="hf_alice",
        )
        assert status == 200 and json.loads(body)["url"] == f"{hub.endpoint}/team/m"
        status, _, body = call(
            hub, "POST", "/api/repos/create", {"name": "m", "organization": "team"}, token="hf_alice"
        )
        assert status == 409 and json.loads(body)["url"] == f"{hub.endpoint}/team/m"  # exist_ok needs the url
        assert hub.is_private("team/m")
        status, headers, _ = call(hub, "GET", "/api/models/team/m")  # anonymous: hidden
        assert status == 401 and headers["X-Error-Code"] == "RepoNotFound"
        assert call(hub, "GET", "/api/models/team/m", token=reader)[0] == 404  # not a member: hidden
        status, _, body = call(hub, "GET", "/api/models/team/m", token="hf_alice")
        assert status == 200 and json.loads(body)["private"] is True
        status, headers, _ = call(hub, "GET", "/team/m/resolve/main/missing.txt", token="hf_alice")
        assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
        assert call(hub, "GET", "/team/m/resolve/nope/.gitattributes", token="hf_alice")[0] == 404
    with HubServer(tmp_path / "hub", users=users) as again:  # the same root: repos survive a restart
        assert again.is_private("team/m") and len(again.commits("team/m")) == 1


def test_commit_is_atomic_and_faults_apply(hub):
    token = hub.token
    assert call(hub, "POST", "/api/repos/create", {"name": "m", "organization": "ns"}, token=token)[0] == 200
    before = hub.commits("ns/m")
    # An LFS reference to bytes that were never uploaded: the whole commit is refused, nothing lands.
    missing_lfs = {
        "key": "lfsFile",
        "value": {"path": "model.safetensors", "algo": "sha256", "oid": "ab" * 32, "size": 3},
    }
    status, _, body = call(
        hub,
        "POST",
        "/api/models/ns/m/commit/main",
        data=commit_lines(regular_file("config.json", b"{}"), missing_lfs),
        token=token,
    )
    assert status == 422 and b"was not uploaded" in body
    assert hub.commits("ns/m") == before
    # Invalid card metadata is refused at commit time too.
    bad_card = regular_file("README.md", b"---\nlicense: not-a-license\n---\n# x\n")
    assert call(hub, "POST", "/api/models/ns/m/commit/main", data=commit_lines(bad_card), token=token)[0] == 400
    # A connection cut mid-request applies nothing; an injected 503 applies nothing.
    drop = hub.add_fault(r"/commit/", method="POST", action="drop")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        call(
            hub,
            "POST",
            "/api/models/ns/m/commit/main",
            data=commit_lines(regular_file("a.txt", b"a" * 200_000)),
            token=token,
        )
    hub.add_fault(r"/commit/", method="POST", action="status", status=503)
    assert (
        call(hub, "POST", "/api/models/ns/m/commit/main", data=commit_lines(regular_file("a.txt", b"a")), token=token)[
            0
        ]
        == 503
    )
    assert drop.hits == 1 and hub.commits("ns/m") == before
    # Faults are used up: the next commit lands whole.
    status, _, body = call(
        hub, "POST", "/api/models/ns/m/commit/main", data=commit_lines(regular_file("a.txt", b"abc")), token=token
    )
    assert status == 200 and json.loads(body)["commitUrl"].endswith(json.loads(body)["commitOid"])
    assert hub.read_file("ns/m", "a.txt") == b"abc" and len(hub.commits("ns/m")) == 2
    # Range reads and download headers.
    status, headers, body = call(hub, "GET", "/ns/m/resolve/main/a.txt", token=token)
    assert status == 200 and body == b"abc" and headers["X-Repo-Commit"] == hub.commits("ns/m")[0]["oid"]
    request = urllib.request.Request(f"{hub.endpoint}/ns/m/resolve/main/a.txt", headers={"Range": "bytes=1-"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 206 and response.read() == b"bc"


def test_validate_metadata_rules():
    good = "---\nlicense: apache-2.0\nbase_model: org/model\nmodel-index:\n- name: x\n  results:\n  - task: {type: text-classification}\n    dataset: {type: nyu-mll/glue, name: GLUE RTE, split: validation}\n    metrics: [{type: accuracy, value: 0.6}]\n---\n"
    assert validate_metadata(good) == ([], [])
    assert validate_metadata("# no metadata")[1] == ["empty or missing yaml metadata in repo card"]
    errors, _ = validate_metadata("---\nlicense: nope\nbase_model: /home/me/model\npipeline_tag: soup\n---\n")
    assert len(errors) == 3
    errors, _ = validate_metadata(
        "---\nmodel-index:\n- name: x\n  results:\n  - task: {type: t}\n    dataset: {type: d}\n    metrics: []\n---\n"
    )
    assert '"model-index[0].results[0].dataset.name" is required' in errors
    assert validate_metadata("---\n[unclosed\n---\n")[0][0].startswith("YAML parse error")


CLIENT_SCRIPT = textwrap.dedent(
    """
    import os, sys, tempfile
    import torch
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from transformers import AutoModelForSequenceClassification, BertConfig

    api = HfApi()
    url = api.create_repo("ns/client", private=True, exist_ok=True)
    assert url == os.environ["HF_ENDPOINT"] + "/ns/client", url
    assert api.create_repo("ns/client", exist_ok=True) == url
    folder = tempfile.mkdtemp()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(folder)
    open(os.path.join(folder, "README.md"), "w").write("---\\nlicense: mit\\n---\\n# client test\\n")
    first = api.upload_folder(repo_id="ns/client", folder_path=folder, commit_message="first")
    again = api.upload_folder(repo_id="ns/client", folder_path=folder)
    assert again.oid == first.oid, "unchanged re-upload must not commit"
    assert [c.title for c in api.list_repo_commits("ns/client")] == ["first", "initial commit"]
    assert set(api.list_repo_files("ns/client")) == {".gitattributes", "README.md", "config.json", "model.safetensors"}
    info = api.model_info("ns/client", files_metadata=True)
    assert info.private and info.sha == first.oid and info.card_data["license"] == "mit"
    weights = {s.rfilename: s for s in info.siblings}["model.safetensors"]
    print("LFS" if weights.lfs else "REGULAR", weights.size)
    path = hf_hub_download("ns/client", "config.json")
    assert open(path).read() == open(os.path.join(folder, "config.json")).read()
    snapshot = snapshot_download("ns/client", cache_dir=tempfile.mkdtemp())
    assert sorted(os.listdir(snapshot)) == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    loaded = AutoModelForSequenceClassification.from_pretrained("ns/client", cache_dir=tempfile.mkdtemp())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    model.push_to_hub("ns/pushed", commit_message="push_to_hub")
    assert "model.safetensors" in api.list_repo_files("ns/pushed")
    api.create_branch("ns/client", branch="dev")
    assert {b.name for b in api.list_repo_refs("ns/client").branches} == {"main", "dev"}
    api.update_repo_settings("ns/pushed", private=True)
    assert api.model_info("ns/pushed").private
    api.delete_repo("ns/pushed")
    api.delete_repo("ns/pushed", missing_ok=True)
    print("CLIENT OK")
    """
)


@pytest.mark.parametrize("lfs", [False, True], ids=["xet-on-regular-uploads", "xet-off-lfs-batch"])
def test_real_client_round_trip(tmp_path, cli_env, lfs):
    """The unmodified huggingface_hub + transformers clients: create, upload, no-op re-upload, list, info,
    hf_hub_download, snapshot_download, from_pretrained, push_to_hub, branches. With Xet on, the server
    answers `regular` for every file; with HF_HUB_DISABLE_XET=1 and lfs=True, weights go through the
    LFS batch API (here in multipart uploads of 16 KiB)."""
    with HubServer(tmp_path / "hub", lfs=lfs, multipart_chunk_size=16 * 1024 if lfs else None) as hub:
        env = client_env(cli_env, hub, tmp_path / "home", xet=not lfs)
        result = subprocess.run(
            [sys.executable, "-c", CLIENT_SCRIPT], env=env, capture_output=True, text=True, timeout=240
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "CLIENT OK" in result.stdout
        assert ("LFS" if lfs else "REGULAR") in result.stdout
        assert hub.is_private("ns/client") and not hub.repo_exists("ns/pushed")
        assert list(hub.unhandled) == []  # every request the clients made is implemented
        methods = {(method, path.split("/")[-1]) for method, path, _ in hub.requests}
        assert (("PUT", "1") in methods) == lfs  # multipart part 1 was uploaded only in LFS mode
        assert os.environ.get("HF_HUB_OFFLINE") == "1"  # the test process itself stays offline
