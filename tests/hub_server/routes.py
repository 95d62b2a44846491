"""Routes that create, describe, list and download repos (everything but uploads)."""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import parse_qs

from .handler import HandlerBase
from .metadata import front_matter, validate_metadata
from .protocol import HttpError, Reply, json_reply
from .storage import DEFAULT_GITATTRIBUTES, NAME_RE, URL_PREFIX, Repo, StoredFile, git_blob_sha1, utc_now


class RepoRoutes(HandlerBase):
    def _h_create_repo(self, params, query, body, user) -> Reply:
        payload = body.json()
        if user is None:
            raise HttpError(401, "You must be authenticated to create a repository")
        name, namespace = payload.get("name"), payload.get("organization") or user.name
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIX:
            raise HttpError(400, f"Invalid repo type {repo_type!r}")
        if not isinstance(name, str) or not NAME_RE.match(name) or not NAME_RE.match(namespace):
            raise HttpError(400, f"Invalid repo name {namespace}/{name}")
        if not user.can_write(namespace):
            raise HttpError(403, f"You don't have the rights to create a {repo_type} under the namespace {namespace!r}")
        repo_id = f"{namespace}/{name}"
        private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
        with self.hub._lock:
            existing = self.hub._repos.get(f"{repo_type}:{repo_id}")
            if existing is not None:
                raise HttpError(409, "You already created this repo", url=self._repo_url(existing))
            repo = Repo(repo_type, repo_id, private, utc_now())
            attributes = DEFAULT_GITATTRIBUTES.encode()
            entry = StoredFile(self.hub._store_bytes(attributes), git_blob_sha1(attributes), len(attributes), False)
            initial = self.hub._new_commit(repo, None, "initial commit", "", user.name, {".gitattributes": entry})
            repo.branches["main"] = initial.oid
            self.hub._repos[repo.key] = repo
            self.hub._save_state()
        return json_reply({"url": self._repo_url(repo), "name": repo_id, "id": repo_id})

    def _h_delete_repo(self, params, query, body, user) -> Reply:
        payload = body.json()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or (user.name if user else '')}/{payload.get('name')}"
        with self.hub._lock:
            self.hub._writable(repo_type, repo_id, user)
            del self.hub._repos[f"{repo_type}:{repo_id}"]
            self.hub._save_state()
        return json_reply({})

    def _h_settings(self, params, query, body, user) -> Reply:
        payload = body.json()
        with self.hub._lock:
            repo = self._open(params, user, write=True)
            if "visibility" in payload:
                repo.private = payload["visibility"] != "public"
            elif "private" in payload:
                repo.private = bool(payload["private"])
            self.hub._save_state()
        return json_reply({})

    def _h_validate_yaml(self, params, query, body, user) -> Reply:
        payload = body.json()
        errors, warnings = validate_metadata(str(payload.get("content", "")), payload.get("repoType") or "model")
        return json_reply(
            {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]},
            400 if errors else 200,
        )

    def _h_whoami(self, params, query, body, user) -> Reply:
        if user is None:
            raise HttpError(401, "Invalid user token")
        role = "write" if user.write else "read"
        return json_reply(
            {
                "type": "user",
                "name": user.name,
                "fullname": user.name,
                "orgs": [{"type": "org", "name": org} for org in user.orgs if org != "*"],
                "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": role}},
            }
        )

    def _h_agent_harnesses(self, params, query, body, user) -> Reply:
        return json_reply({"standardEnvVars": [], "harnesses": {}})  # the client's telemetry registry: empty

    def _h_repo_info(self, params, query, body, user) -> Reply:
        repo, commit = self._open_at(params, user)
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.blob_id)
                if entry.lfs:
                    lfs = entry.tree_entry(path)["lfs"]
                    sibling["lfs"] = {"size": lfs["size"], "sha256": lfs["oid"], "pointerSize": lfs["pointerSize"]}
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.key.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        readme = commit.files.get("README.md")
        if readme is not None:
            metadata, _ = front_matter(self.hub._object_path(readme.sha256).read_text(errors="replace"))
            if isinstance(metadata, dict):
                info["cardData"] = {k: v for k, v in metadata.items() if k != "model-index"}
                info["tags"] = list(metadata.get("tags") or [])
                for key in ("pipeline_tag", "library_name"):
                    if key in metadata:
                        info[key] = metadata[key]
        return json_reply(info)

    def _h_tree(self, params, query, body, user) -> Reply:
        _, commit = self._open_at(params, user)
        prefix = params.get("path", "").strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries, folders = [], set()
        for path, entry in sorted(commit.files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            relative = path[len(prefix) + 1 :] if prefix else path
            if "/" in relative:
                parts = relative.split("/")
                for depth in range(1, len(parts) if recursive else 2):
                    folders.add("/".join(filter(None, [prefix, *parts[:depth]])))
                if not recursive:
                    continue
            entries.append(entry.tree_entry(path))
        if prefix and not entries and not folders:
            raise HttpError(404, f"{prefix} does not exist on {params['rev']}", "EntryNotFound")
        folder_entries = [
            {"type": "directory", "oid": hashlib.sha1(f"{commit.oid}:{f}".encode()).hexdigest(), "size": 0, "path": f}
            for f in sorted(folders)
        ]
        return json_reply(folder_entries + entries)

    def _h_paths_info(self, params, query, body, user) -> Reply:
        form = parse_qs(body.read_all().decode())
        _, commit = self._open_at(params, user)
        out = []
        for wanted in form.get("paths", []):
            wanted = wanted.strip("/")
            if wanted in commit.files:
                out.append(commit.files[wanted].tree_entry(wanted))
            elif any(p.startswith(wanted + "/") for p in commit.files):
                out.append(
                    {"type": "directory", "oid": hashlib.sha1(wanted.encode()).hexdigest(), "size": 0, "path": wanted}
                )
        return json_reply(out)

    def _h_refs(self, params, query, body, user) -> Reply:
        with self.hub._lock:
            repo = self._open(params, user)
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in repo.branches.items()]
            prs = [
                {"name": f"refs/pr/{i}", "ref": f"refs/pr/{i}", "targetCommit": oid}
                for i, oid in enumerate(repo.pull_requests, 1)
            ]
        return json_reply({"branches": branches, "tags": [], "converts": [], "pullRequests": prs})

    def _h_list_commits(self, params, query, body, user) -> Reply:
        with self.hub._lock:
            repo = self._open(params, user)
            history = self.hub.commits(repo.repo_id, params["rev"], repo.repo_type)
            out = [
                {
                    "id": item["oid"],
                    "title": item["title"],
                    "message": item["message"],
                    "authors": [{"user": repo.commits[item["oid"]].author}],
                    "date": repo.commits[item["oid"]].date,
                }
                for item in history
            ]
        return json_reply(out)

    def _h_create_branch(self, params, query, body, user) -> Reply:
        payload = body.json()
        with self.hub._lock:
            repo = self._open(params, user, write=True)
            if params["branch"] in repo.branches:
                raise HttpError(409, f"Branch {params['branch']} already exists")
            repo.branches[params["branch"]] = self.hub._resolve(repo, payload.get("startingPoint") or "main")
            self.hub._save_state()
        return json_reply({})

    def _h_delete_branch(self, params, query, body, user) -> Reply:
        with self.hub._lock:
            repo = self._open(params, user, write=True)
            if params["branch"] == "main" or repo.branches.pop(params["branch"], None) is None:
                raise HttpError(404 if params["branch"] != "main" else 403, f"Cannot delete branch {params['branch']}")
            self.hub._save_state()
        return json_reply({})

    def _h_xet_token(self, params, query, body, user) -> Reply:
        raise HttpError(
            501,
            "The local hub does not implement Xet storage: run the client with HF_HUB_DISABLE_XET=1, or start the hub without --lfs",
        )

    # -------------------------------------------------------------- downloads

    def _h_resolve(self, params, query, body, user) -> Reply:
        _, commit = self._open_at(params, user)
        entry = commit.files.get(params["path"])
        if entry is None:
            raise HttpError(404, f"Entry not found: {params['path']}", "EntryNotFound")
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{entry.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        start, end = 0, entry.size - 1
        status = 200
        ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if ranged and entry.size and (ranged.group(1) or ranged.group(2)):
            if ranged.group(1):
                start = int(ranged.group(1))
                end = min(int(ranged.group(2)), end) if ranged.group(2) else end
            else:
                start = max(entry.size - int(ranged.group(2)), 0)
            if start > end:
                raise HttpError(416, "Requested range not satisfiable")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        return Reply(status, b"", headers, self.hub._object_path(entry.sha256), start, end - start + 1)
