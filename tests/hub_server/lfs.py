"""Routes that upload: preupload, the NDJSON commit (applied in one step), and the git-LFS batch API
(single and multipart PUTs, verify)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
from typing import Any

from .handler import HandlerBase
from .metadata import validate_metadata
from .protocol import CHUNK, HttpError, Reply, json_reply
from .storage import LFS_THRESHOLD_BYTES, URL_PREFIX, StoredFile, git_blob_sha1

MAX_COMMIT_OPERATIONS = 25_000


class UploadRoutes(HandlerBase):
    def _h_preupload(self, params, query, body, user) -> Reply:
        payload = body.json()
        _, commit = self._open_at(params, user, write=True)
        files = []
        for item in payload.get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            mode = self.hub._upload_mode(item["path"], int(item.get("size", 0)), sample)
            answer: dict[str, Any] = {"path": item["path"], "uploadMode": mode, "shouldIgnore": False}
            existing = commit.files.get(item["path"])
            if existing is not None:
                answer["oid"] = existing.sha256 if mode == "lfs" else existing.git_sha1
            files.append(answer)
        return json_reply({"files": files, "commitOid": commit.oid})

    def _h_commit(self, params, query, body, user) -> Reply:
        repo = self._open(params, user, write=True)
        header: dict[str, Any] | None = None
        additions: dict[str, StoredFile] = {}
        deletions: list[tuple[str, bool]] = []
        for count, line in enumerate(body.lines()):
            if count > MAX_COMMIT_OPERATIONS:
                raise HttpError(413, f"Too many operations in one commit (> {MAX_COMMIT_OPERATIONS})")
            try:
                item = json.loads(line)
                key, value = item["key"], item["value"]
            except (ValueError, KeyError, TypeError) as err:
                raise HttpError(400, f"Malformed commit payload line {count + 1}") from err
            if key == "header":
                header = value
            elif key == "file":
                try:
                    data = base64.b64decode(value["content"], validate=True)
                except (binascii.Error, KeyError) as err:
                    raise HttpError(400, f"Invalid base64 content for {value.get('path')}") from err
                additions[_clean_path(value["path"])] = StoredFile(
                    self.hub._store_bytes(data), git_blob_sha1(data), len(data), False
                )
            elif key == "lfsFile":
                sha256, size = str(value.get("oid", "")), value.get("size")
                stored = self.hub._object_path(sha256)
                if not re.fullmatch(r"[0-9a-f]{64}", sha256) or not stored.is_file():
                    raise HttpError(422, f"LFS object {sha256} for {value.get('path')} was not uploaded")
                actual = stored.stat().st_size
                if size is not None and int(size) != actual:
                    raise HttpError(422, f"LFS object {sha256} has size {actual}, not {size}")
                data_git_sha1 = git_blob_sha1(stored.read_bytes()) if actual <= LFS_THRESHOLD_BYTES else ""
                additions[_clean_path(value["path"])] = StoredFile(sha256, data_git_sha1, actual, True)
            elif key in ("deletedFile", "deletedFolder"):
                deletions.append((_clean_path(value["path"]), key == "deletedFolder"))
            else:
                raise HttpError(400, f"Unknown commit operation {key!r}")
        if not header or not str(header.get("summary", "")).strip():
            raise HttpError(400, "Commit summary is required")
        if "README.md" in additions:
            readme = self.hub._object_path(additions["README.md"].sha256).read_text(errors="replace")
            errors, _ = validate_metadata(readme, repo.repo_type)
            if errors:
                raise HttpError(400, "Invalid metadata in README.md: " + "; ".join(errors))
        create_pr = query.get("create_pr", ["0"])[0] in ("1", "true", "True")
        return self._apply_commit(
            repo.repo_type, repo.repo_id, params["rev"], header, additions, deletions, create_pr, user
        )

    def _apply_commit(self, repo_type, repo_id, revision, header, additions, deletions, create_pr, user) -> Reply:
        """The atomic step: everything was validated and stored; now move one ref under the lock."""
        with self.hub._lock:
            repo = self.hub._writable(repo_type, repo_id, user)
            head = self.hub._resolve(repo, revision)
            is_branch = revision.removeprefix("refs/heads/") in repo.branches
            is_pr = re.fullmatch(r"refs/pr/\d+", revision) is not None
            if not (is_branch or is_pr):
                raise HttpError(400, f"Cannot commit to {revision}: not a branch")
            parent = header.get("parentCommit")
            if parent and not create_pr and not head.startswith(parent):
                raise HttpError(412, f"A commit has happened since {parent}. Please refresh and try again.")
            files = dict(repo.commits[head].files)
            for path, is_folder in deletions:
                if is_folder:
                    doomed = [p for p in files if p.startswith(path.rstrip("/") + "/")]
                else:
                    doomed = [path] if path in files else []
                if not doomed:
                    raise HttpError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del files[p]
            files.update(additions)
            commit = self.hub._new_commit(
                repo, head, header["summary"], header.get("description", ""), user.name, files
            )
            reply: dict[str, Any] = {"success": True, "commitOid": commit.oid}
            if create_pr:
                repo.pull_requests.append(commit.oid)
                reply["pullRequestUrl"] = f"{self._repo_url(repo)}/discussions/{len(repo.pull_requests)}"
            elif is_pr:
                repo.pull_requests[int(revision.rsplit("/", 1)[1]) - 1] = commit.oid
            else:
                repo.branches[revision.removeprefix("refs/heads/")] = commit.oid
            self.hub._save_state()
        reply["commitUrl"] = f"{self._repo_url(repo)}/commit/{commit.oid}"
        return json_reply(reply)

    def _h_lfs_batch(self, params, query, body, user) -> Reply:
        payload = body.json()
        repo = self._open(params, user, write=True)
        if payload.get("operation") != "upload":
            raise HttpError(400, "Only the upload operation is implemented")
        objects = []
        chunk = self.hub.multipart_chunk_size
        for item in payload.get("objects", []):
            oid, size = str(item.get("oid", "")), int(item.get("size", -1))
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or size < 0:
                objects.append(
                    {"oid": oid, "size": max(size, 0), "error": {"code": 422, "message": "invalid oid or size"}}
                )
                continue
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not self.hub._object_path(oid).is_file():
                sig = self.hub._sign(repo.key, oid, str(size))
                upload_url = f"{self._base_url()}/lfs-upload/{oid}?size={size}&sig={sig}"
                upload: dict[str, Any] = {"href": upload_url, "header": {}}
                if chunk and size > chunk:
                    parts = -(-size // chunk)
                    upload["href"] = f"{self._base_url()}/lfs-upload/{oid}/complete?size={size}&sig={sig}"
                    upload["header"] = {"chunk_size": str(chunk)}
                    upload["header"].update(
                        {
                            str(n): f"{self._base_url()}/lfs-upload/{oid}/part/{n}?size={size}&sig={sig}"
                            for n in range(1, parts + 1)
                        }
                    )
                verify = f"{self._base_url()}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}.git/info/lfs/objects/verify"
                answer["actions"] = {"upload": upload, "verify": {"href": verify, "header": {}}}
            objects.append(answer)
        return json_reply(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            **{"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _check_signature(self, oid: str, query: dict[str, list[str]]) -> int:
        size, sig = query.get("size", ["-1"])[0], query.get("sig", [""])[0]
        with self.hub._lock:
            keys = list(self.hub._repos)
        if not any(hmac.compare_digest(sig, self.hub._sign(key, oid, size)) for key in keys):
            raise HttpError(403, "Invalid or expired upload signature")
        return int(size)

    def _h_lfs_put(self, params, query, body, user) -> Reply:
        oid = params["oid"]
        size = self._check_signature(oid, query)
        part = params.get("part")
        name = f"{oid}.part{int(part):05d}" if part else f"{oid}.{secrets.token_hex(4)}"
        tmp = self.hub.root / "uploads" / name
        digest, written = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as handle:
                for data in body.chunks():
                    written += len(data)
                    if written > size:
                        raise HttpError(400, f"Upload larger than announced ({size} bytes)")
                    digest.update(data)
                    handle.write(data)
            if part:
                return Reply(200, b"", {"ETag": f'"{digest.hexdigest()}"'})
            if written != size or digest.hexdigest() != oid:
                raise HttpError(400, f"Uploaded content does not match oid {oid} / size {size}")
            dest = self.hub._object_path(oid)
            dest.parent.mkdir(exist_ok=True)
            os.replace(tmp, dest)
            return Reply(200)
        finally:
            if not part:
                tmp.unlink(missing_ok=True)

    def _h_lfs_complete(self, params, query, body, user) -> Reply:
        oid = params["oid"]
        size = self._check_signature(oid, query)
        payload = body.json()
        parts = sorted(payload.get("parts", []), key=lambda p: p["partNumber"])
        sources = [self.hub.root / "uploads" / f"{oid}.part{p['partNumber']:05d}" for p in parts]
        missing = [str(p) for p in sources if not p.is_file()]
        if missing or payload.get("oid") != oid:
            raise HttpError(400, f"Multipart upload of {oid} is incomplete")
        tmp = self.hub.root / "uploads" / f"{oid}.{secrets.token_hex(4)}"
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for source in sources:
                    with open(source, "rb") as handle:
                        while data := handle.read(CHUNK):
                            digest.update(data)
                            out.write(data)
            if tmp.stat().st_size != size or digest.hexdigest() != oid:
                raise HttpError(400, f"Multipart content does not match oid {oid} / size {size}")
            dest = self.hub._object_path(oid)
            dest.parent.mkdir(exist_ok=True)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
            for source in sources:
                source.unlink(missing_ok=True)
        return json_reply({})

    def _h_lfs_verify(self, params, query, body, user) -> Reply:
        payload = body.json()
        self._open(params, user, write=True)
        stored = self.hub._object_path(str(payload.get("oid", "")))
        if not stored.is_file() or stored.stat().st_size != payload.get("size"):
            raise HttpError(404, f"LFS object {payload.get('oid')} not found")
        return json_reply({})


def _clean_path(path: Any) -> str:
    if (
        not isinstance(path, str)
        or not path
        or path.startswith("/")
        or any(p in ("..", ".git") for p in path.split("/"))
    ):
        raise HttpError(400, f"Invalid path in repo: {path!r}")
    return path
