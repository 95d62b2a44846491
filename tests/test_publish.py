"""The publisher against the local Hub server: what lands, what a user downloads, and every failure path.

End-to-end tests run the real CLI and the real client in subprocesses (HF_ENDPOINT / HF_HUB_DISABLE_XET
are read when huggingface_hub is imported). Failure-path tests call `publish_folder` in-process with an
explicit endpoint and token (the test process is offline by conftest, so they lift HF_HUB_OFFLINE with
monkeypatch) to stay fast.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import uuid

import huggingface_hub
import pytest
from hub_client import call, client_env
from hub_server import HubServer, HubUser
from soup_folders import build_soup_folder

from hf_soup.errors import SoupError
from hf_soup.publish import publish_folder

REPO = "ns/rte-soup"
PUBLISHED = {
    ".gitattributes",
    "README.md",
    "config.json",
    "model.safetensors",
    "soup.json",
    "soup.png",
    "tokenizer.json",
    "tokenizer_config.json",
}

VERIFY_SCRIPT = textwrap.dedent(
    """
    import os, re, sys, torch
    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, repo = sys.argv[1], sys.argv[2]
    model = AutoModelForSequenceClassification.from_pretrained(repo)
    local = load_file(os.path.join(folder, "model.safetensors"))
    remote = model.state_dict()
    assert set(remote) == set(local), set(remote) ^ set(local)
    assert all(torch.equal(remote[name], tensor) for name, tensor in local.items())
    pair = ("A cat is sleeping on the mat.", "An animal is on the mat.")
    assert AutoTokenizer.from_pretrained(repo)(*pair) == AutoTokenizer.from_pretrained(folder)(*pair)
    card = open(hf_hub_download(repo, "README.md")).read()
    snippet = re.search(r"```python\\n(.*?)```", card, re.S).group(1)
    exec(snippet)  # the card's usage snippet, exactly as written
    print("VERIFIED", model.config.id2label)
    """
)


@pytest.fixture(scope="module")
def soup_template(tmp_path_factory, tiny_bert_dir):
    return build_soup_folder(tmp_path_factory.mktemp("template") / "rte-greedy", tiny_bert_dir)


@pytest.fixture
def soup_dir(tmp_path, soup_template):
    return shutil.copytree(soup_template, tmp_path / "rte-greedy")


def publish(hub: HubServer, folder, **kwargs) -> str:
    kwargs.setdefault("token", hub.token)
    return publish_folder(folder, REPO, endpoint=hub.endpoint, backoff_s=0.01, max_attempts=3, **kwargs)


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hf_soup.publish", *args], env=env, capture_output=True, text=True, timeout=300
    )


def assert_no_token(token: str, *texts: str | bytes) -> None:
    for text in texts:
        assert token.encode() not in (text if isinstance(text, bytes) else text.encode())


# ----------------------------------------------------------------------------- end to end (subprocesses)


@pytest.mark.parametrize("lfs", [False, True], ids=["xet-on-regular-uploads", "xet-off-lfs-batch"])
def test_publish_then_from_pretrained_gives_the_same_model(tmp_path, cli_env, soup_dir, lfs):
    with HubServer(tmp_path / "hub", lfs=lfs) as hub:
        env = client_env(cli_env, hub, tmp_path / "home", xet=not lfs)
        first = run_cli([str(soup_dir), "--repo-id", REPO, "--private", "--license", "apache-2.0"], env)
        assert first.returncode == 0, first.stderr[-3000:]
        head = hub.commits(REPO)[0]["oid"]
        assert f"{hub.endpoint}/{REPO}/commit/{head}" in first.stdout
        assert hub.is_private(REPO) and set(hub.files(REPO)) == PUBLISHED
        assert hub.files(REPO)["model.safetensors"]["lfs"] == lfs and hub.files(REPO)["soup.png"]["lfs"] == lfs
        assert call(hub, "GET", f"/api/models/{REPO}")[0] == 401  # private: hidden from anonymous users

        verify = subprocess.run(
            [sys.executable, "-c", VERIFY_SCRIPT, str(soup_dir), REPO],
            env=client_env(cli_env, hub, tmp_path / "home2", xet=not lfs),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert verify.returncode == 0, verify.stderr[-3000:]
        assert "VERIFIED" in verify.stdout and "'label':" in verify.stdout  # the snippet ran and classified

        again = run_cli([str(soup_dir), "--repo_id", REPO], env)  # unchanged folder: no new commit
        assert again.returncode == 0, again.stderr[-3000:]
        assert "no changes" in again.stdout and hub.commits(REPO)[0]["oid"] == head and len(hub.commits(REPO)) == 2
        assert list(hub.unhandled) == []

        repo_files = [hub.read_file(REPO, path) for path in hub.files(REPO)]
        local_files = [p.read_bytes() for p in soup_dir.iterdir() if p.is_file()]
        outputs = [r.stdout + r.stderr for r in (first, verify, again)]
        assert_no_token(hub.token, *outputs, *repo_files, *local_files, (hub.root / "state.json").read_bytes())


def test_wrong_token_is_a_clear_401_and_creates_nothing(tmp_path, cli_env, soup_dir):
    with HubServer(tmp_path / "hub") as hub:
        wrong = "hf_" + uuid.uuid4().hex
        result = run_cli([str(soup_dir), "--repo_id", REPO], client_env(cli_env, hub, tmp_path / "home", token=wrong))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "authentication failed (401)" in lines[0]
        assert not hub.repo_exists(REPO)
        assert_no_token(wrong, result.stdout, result.stderr)


@pytest.mark.integration
def test_publish_real_minilm_soup(tmp_path, cli_env, minilm_dir):
    """A real MiniLM classification folder (90 MB of weights) through the LFS path, and back."""
    folder = build_soup_folder(tmp_path / "minilm-rte-greedy", minilm_dir)
    with HubServer(tmp_path / "hub", lfs=True) as hub:
        env = client_env(cli_env, hub, tmp_path / "home", xet=False)
        result = run_cli([str(folder), "--repo-id", REPO], env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert hub.files(REPO)["model.safetensors"]["size"] == (folder / "model.safetensors").stat().st_size
        verify = subprocess.run(
            [sys.executable, "-c", VERIFY_SCRIPT, str(folder), REPO],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert verify.returncode == 0, verify.stderr[-3000:]
        assert "VERIFIED" in verify.stdout


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """huggingface.co:443 answers; bounded even when DNS hangs (getaddrinfo ignores socket timeouts)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(("huggingface.co", 443), timeout=timeout_s).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    return bool(result and result[0])


@pytest.mark.integration
@pytest.mark.skipif(not os.environ.get("HF_TOKEN"), reason="optional: needs HF_TOKEN (and network) for the real Hub")
def test_publish_to_the_real_hub(tmp_path, cli_env, soup_dir):
    """Optional: only with HF_TOKEN set and huggingface.co reachable. Pushes a private repo, then deletes it."""
    token = os.environ["HF_TOKEN"]
    if not _hub_reachable():
        pytest.skip("huggingface.co is not reachable")
    env = {k: v for k, v in cli_env.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT")}
    script = textwrap.dedent(
        f"""
        import sys, uuid
        from huggingface_hub import HfApi
        from hf_soup.publish import publish_folder
        api = HfApi()
        repo = f"{{api.whoami()['name']}}/hf-soup-test-{{uuid.uuid4().hex[:8]}}"
        try:
            publish_folder({str(soup_dir)!r}, repo, private=True)
            assert "model.safetensors" in api.list_repo_files(repo)
        finally:
            api.delete_repo(repo, missing_ok=True)
        print("REAL HUB OK")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_token(token, result.stdout, result.stderr)


# ----------------------------------------------------------------------------- failures (in-process)


@pytest.mark.parametrize("lfs", [False, True], ids=["commit-with-regular-files", "lfs-put"])
def test_dropped_connection_mid_upload_is_retried(tmp_path, soup_dir, online, monkeypatch, capsys, lfs):
    """Regular uploads travel in the commit (retried by the publisher); an LFS PUT is retried by the client."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", lfs)
    with HubServer(tmp_path / "hub", lfs=lfs) as hub:
        fault = hub.add_fault(
            r"^/lfs-upload/" if lfs else r"/commit/",
            method="PUT" if lfs else "POST",
            action="drop",
            times=1 if lfs else 2,
        )
        url = publish(hub, soup_dir)
        assert fault.hits == fault.times and len(hub.commits(REPO)) == 2 and url.endswith(hub.commits(REPO)[0]["oid"])
        assert hub.read_file(REPO, "model.safetensors") == (soup_dir / "model.safetensors").read_bytes()
        assert lfs or "retrying" in capsys.readouterr().err


def test_lost_reply_after_a_landed_commit_is_not_a_duplicate(tmp_path, soup_dir, online):
    with HubServer(tmp_path / "hub") as hub:
        hub.add_fault(r"/commit/", method="POST", action="drop_after")
        url = publish(hub, soup_dir)
        assert [c["title"] for c in hub.commits(REPO)][1:] == ["initial commit"] and url.endswith(
            hub.commits(REPO)[0]["oid"]
        )


def test_failed_push_never_half_publishes(tmp_path, soup_template, tiny_bert_dir, online, monkeypatch):
    """v1 is published; pushing v2 fails at the commit every time: the repo still serves v1, whole."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    v1 = shutil.copytree(soup_template, tmp_path / "v1")
    v2 = build_soup_folder(tmp_path / "v2", tiny_bert_dir, seed=1)
    with HubServer(tmp_path / "hub", lfs=True) as hub:
        publish(hub, v1)
        before = hub.commits(REPO)
        hub.add_fault(r"/commit/", method="POST", action="drop", times=10)
        with pytest.raises(SoupError, match=r"connection failed after 3 attempts") as err:
            publish(hub, v2)
        assert "\n" not in str(err.value) and hub.token not in str(err.value)
        assert hub.commits(REPO) == before
        assert hub.read_file(REPO, "model.safetensors") == (v1 / "model.safetensors").read_bytes()


def test_sigkill_during_an_upload_publishes_nothing_and_the_rerun_completes(tmp_path, cli_env, soup_dir):
    """The publisher is killed while its commit is in flight (the server holds the request): no
    commit lands, so nothing of the soup is visible; the rerun publishes it whole."""
    import signal
    import time

    with HubServer(tmp_path / "hub") as hub:
        env = client_env(cli_env, hub, tmp_path / "home")
        stall = hub.add_fault(r"/commit/", method="POST", action="stall", times=1)
        command = [sys.executable, "-m", "hf_soup.publish", str(soup_dir), "--repo_id", REPO]
        publisher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while stall.hits == 0 and publisher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stall.hits == 1, publisher.communicate()[0][-3000:]
        publisher.send_signal(signal.SIGKILL)
        publisher.wait()
        assert "model.safetensors" not in hub.files(REPO) and len(hub.commits(REPO)) == 1  # only create_repo's

        rerun = run_cli([str(soup_dir), "--repo_id", REPO], env)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert set(hub.files(REPO)) == PUBLISHED and len(hub.commits(REPO)) == 2
        assert hub.read_file(REPO, "model.safetensors") == (soup_dir / "model.safetensors").read_bytes()


def test_transient_5xx_are_retried(tmp_path, soup_dir, online):
    with HubServer(tmp_path / "hub") as hub:
        create = hub.add_fault(r"^/api/repos/create$", action="status", status=503, times=2)
        commit = hub.add_fault(r"/commit/", action="status", status=502, times=1)
        publish(hub, soup_dir)
        assert create.hits == 2 and commit.hits == 1 and len(hub.commits(REPO)) == 2


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"path": r"/commit/", "status": 409}, r"conflict \(409\)"),
        ({"path": r"^/api/models/ns/rte-soup$", "status": 404}, r"not found \(404\)"),
        ({"path": r"/commit/", "status": 500, "times": 99}, r"the Hub answered 500 after 3 attempts"),
    ],
)
def test_http_errors_are_one_line(tmp_path, soup_dir, online, fault, message):
    with HubServer(tmp_path / "hub") as hub:
        hub.add_fault(action="status", **fault)
        with pytest.raises(SoupError, match=message) as err:
            publish(hub, soup_dir)
        assert "\n" not in str(err.value) and hub.token not in str(err.value)
        assert len(hub.commits(REPO)) == 1  # only the repo's initial commit


def test_forbidden_namespace_and_unreachable_endpoint(tmp_path, soup_dir, online):
    with HubServer(tmp_path / "hub", users={"hf_alice": HubUser("alice")}) as hub:
        with pytest.raises(SoupError, match=r"permission denied \(403\).*namespace 'ns'"):
            publish(hub, soup_dir, token="hf_alice")
        endpoint = hub.endpoint
    with pytest.raises(SoupError, match=r"unreachable after 2 attempts"):
        publish_folder(soup_dir, REPO, endpoint=endpoint, token="hf_x", max_attempts=2, backoff_s=0.01)


def test_stale_shards_are_deleted_in_the_same_commit(tmp_path, soup_dir, online):
    from transformers import AutoModelForSequenceClassification

    sharded = shutil.copytree(soup_dir, tmp_path / "sharded")
    (sharded / "model.safetensors").unlink()
    AutoModelForSequenceClassification.from_pretrained(soup_dir).save_pretrained(sharded, max_shard_size="20KB")
    with HubServer(tmp_path / "hub") as hub:
        publish(hub, sharded)
        shards = {p for p in hub.files(REPO) if p.startswith("model-")}
        assert len(shards) > 1 and "model.safetensors.index.json" in hub.files(REPO)
        publish(hub, soup_dir)
        files = set(hub.files(REPO))
        assert files == PUBLISHED and len(hub.commits(REPO)) == 3


def test_revision_and_pull_request_leave_main_alone(tmp_path, soup_dir, online, capsys):
    with HubServer(tmp_path / "hub") as hub:
        publish(hub, soup_dir, revision="exp1", commit_message="soup on a branch")
        assert hub.commits(REPO, "exp1")[0]["title"] == "soup on a branch"
        assert len(hub.commits(REPO, "main")) == 1
        url = publish(hub, soup_dir, create_pr=True)  # main still lacks the files: a PR is opened
        assert "pull request: " in capsys.readouterr().out
        assert url.endswith(hub.commits(REPO, "refs/pr/1")[0]["oid"]) and len(hub.commits(REPO, "main")) == 1


def test_dry_run_needs_no_network_and_writes_nothing(tmp_path, soup_dir, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    summary = publish_folder(soup_dir, REPO, dry_run=True, endpoint="http://127.0.0.1:9")
    assert (
        summary.startswith("dry run: would push 7 files") and "README.md" in summary and "would be generated" in summary
    )
    assert not (soup_dir / "README.md").exists() and not (soup_dir / "soup.png").exists()


def _drop_classifier(folder):
    from safetensors.torch import load_file, save_file

    tensors = {k: v for k, v in load_file(folder / "model.safetensors").items() if not k.startswith("classifier.")}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: (f / "pytorch_model.bin").write_bytes(b"\x80\x04pickle"), "pickled weights"),
        (lambda f: (f / "tokenizer.json").unlink() or (f / "tokenizer_config.json").unlink(), "no tokenizer files"),
        (lambda f: (f / "config.json").unlink(), "config.json: not found"),
        (lambda f: (f / "soup.json").unlink(), "soup.json: not found"),
        (lambda f: (f / "model.safetensors").write_bytes(b"not safetensors"), "not a readable safetensors file"),
        (_drop_classifier, "would be randomly initialised"),
    ],
    ids=["pickle", "tokenizer", "config", "soup-json", "corrupt-weights", "missing-head"],
)
def test_bad_folders_are_refused_before_any_network_call(tmp_path, soup_dir, breakage, message):
    breakage(soup_dir)
    with pytest.raises(SoupError, match=message):
        publish_folder(soup_dir, REPO, endpoint="http://127.0.0.1:9", token="hf_unused")


def test_offline_mode_is_named_not_retried(tmp_path, soup_dir):
    with pytest.raises(SoupError, match="HF_HUB_OFFLINE is set"):  # conftest keeps this process offline
        publish_folder(soup_dir, REPO, endpoint="http://127.0.0.1:9", token="hf_unused")


def test_missing_token_and_bad_repo_id(tmp_path, soup_dir, monkeypatch, online):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(SoupError, match="no Hugging Face token"):
        publish_folder(soup_dir, REPO, endpoint="http://127.0.0.1:9")
    with pytest.raises(SoupError, match="namespace/name"):
        publish_folder(soup_dir, "just-a-name", endpoint="http://127.0.0.1:9")
    assert json.loads((soup_dir / "soup.json").read_text())["name"] == "rte-greedy"
