"""A local Hugging Face Hub for tests: a real HTTP server on 127.0.0.1 that speaks the Hub API endpoints the
`huggingface_hub` 2.4 client uses for models, datasets and Spaces.

- repos: create (409 if it exists, `sdk` required for Spaces), delete, info (`/api/{type}s/{id}[/revision/{rev}]`),
  branches, tree listing, paths-info; Space runtime, secrets, variables and hardware requests;
- README checks: `/api/validate-yaml` (licence ids, `other` + `license_name`, base-model ids, `model-index`,
  Space `sdk`/colours), also enforced on commit;
- uploads: preupload (regular or LFS by the Hub's default `.gitattributes` patterns, size and binary sniffing), the
  git-LFS batch flow (`{id}.git/info/lfs/objects/batch` -> PUT -> verify; optional multipart), NDJSON commits
  (`header`, `file`, `lfsFile`, `deletedFile`, `deletedFolder`) with `parentCommit` checks;
- downloads: HEAD and GET `/{prefix}{id}/resolve/{rev}/{path}` with `X-Repo-Commit`, `ETag`, `X-Linked-Etag`,
  `X-Linked-Size`, `Content-Length` and byte ranges;
- errors routed by `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) as the client expects.

Every request is logged (`server.requests`) so tests can assert what reached the "Hub" (e.g. nothing at all).
Write calls need `Authorization: Bearer <server.token>`; the token is compared, never stored elsewhere.

Use it through the `hub_server` fixture (tests/conftest.py), which points `huggingface_hub` at it.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.hub_store import (  # noqa: F401  (re-exported for tests that extend the server)
    LFS_PATTERNS,
    LFS_SIZE_THRESHOLD,
    REPO_TYPES,
    SPACE_COLORS,
    SPACE_SDKS,
    URL_PREFIX,
    Commit,
    HubHTTPError,
    HubState,
    Repo,
    StoredFile,
    front_matter,
    readme_errors,
)


class HubRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubServer

    # -- plumbing ---------------------------------------------------------------------------------------------------

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def _body(self) -> bytes:
        return self._raw_body

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json_body(self) -> dict:
        body = self._body()
        return json.loads(body) if body else {}

    def _send(self, status: int, payload=None, headers: dict | None = None, body: bytes | None = None) -> None:
        if body is None:
            body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", (headers or {}).pop("Content-Type", "application/json"))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        token = self.server.token
        return token is None or self.headers.get("Authorization") == f"Bearer {token}"

    def _require_write(self) -> None:
        if not self._authorized():
            raise HubHTTPError(401, "Invalid credentials in Authorization header")

    def _dispatch(self) -> None:
        # Read the whole body first, even for requests that fail: a body left unread on a keep-alive connection
        # would be parsed as the client's next request.
        self._raw_body = self._read_body()
        url = urlsplit(self.path)
        state = self.server.state
        with state.lock:
            state.requests.append((self.command, url.path))
        try:
            for method, pattern, handler in ROUTES:
                match = re.fullmatch(pattern, url.path)
                if method == self.command and match:
                    with state.lock:
                        handler(self, *match.groups(), query=parse_qs(url.query))
                    return
            raise HubHTTPError(404, f"No route for {self.command} {url.path}")
        except HubHTTPError as error:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            self._send(error.status, {"error": error.message}, headers)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _dispatch

    # -- repos ------------------------------------------------------------------------------------------------------

    def create_repo(self, query):
        self._require_write()
        body = self._json_body()
        repo_type = body.get("type") or "model"
        namespace = body.get("organization") or self.server.user
        repo_id = f"{namespace}/{body['name']}"
        url = f"{self.server.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"
        if repo_type == "space" and body.get("sdk") not in SPACE_SDKS:
            raise HubHTTPError(400, f"Invalid sdk: pass one of {SPACE_SDKS}")
        if (repo_type, repo_id) in self.server.state.repos:
            self._send(409, {"error": "You already created this repo", "url": url})
            return
        private = body.get("private", body.get("visibility") == "private")
        repo = self.server.state.create(repo_type, repo_id, private=bool(private), sdk=body.get("sdk"))
        if repo_type == "space":
            repo.space_settings["hardware"] = body.get("hardware")
            repo.space_settings["secrets"].update({s["key"]: s["value"] for s in body.get("secrets") or []})
            repo.space_settings["variables"].update({v["key"]: v["value"] for v in body.get("variables") or []})
        self._send(200, {"url": url, "name": repo_id})

    def delete_repo(self, query):
        self._require_write()
        body = self._json_body()
        key = (body.get("type") or "model", f"{body.get('organization') or self.server.user}/{body['name']}")
        self.server.state.repo(*key)
        del self.server.state.repos[key]
        self._send(200, {})

    def repo_info(self, type_plural, repo_id, revision, query):
        repo_type = REPO_TYPES[type_plural]
        repo = self.server.state.repo(repo_type, repo_id, authorized=self._authorized())
        commit = repo.resolve(revision or "main")
        readme = commit.files.get("README.md")
        card = front_matter(readme.content.decode()) if readme else {}
        info = {
            "id": repo_id, "author": repo_id.split("/")[0], "sha": commit.oid, "private": repo.private,
            "lastModified": commit.date, "createdAt": commit.date, "disabled": False, "gated": False,
            "siblings": [{"rfilename": path, "size": len(f.content)} for path, f in sorted(commit.files.items())],
            "cardData": card or None, "tags": list(card.get("tags") or []), "likes": 0, "downloads": 0,
        }
        if repo_type == "model":
            info |= {"library_name": card.get("library_name"), "pipeline_tag": card.get("pipeline_tag")}
        if repo_type == "space":
            info |= {"sdk": repo.sdk, "runtime": self._runtime(repo), "subdomain": repo_id.replace("/", "-").lower()}
        self._send(200, info)

    def create_branch(self, type_plural, repo_id, branch, query):
        self._require_write()
        repo = self.server.state.repo(REPO_TYPES[type_plural], repo_id)
        branch = unquote(branch)
        if branch in repo.branches:
            raise HubHTTPError(409, f"Branch {branch} already exists")
        body = self._json_body()
        repo.branches[branch] = repo.resolve(body.get("startingPoint") or "main").oid
        self._send(200, {})

    def tree(self, type_plural, repo_id, revision, path, query):
        repo = self.server.state.repo(REPO_TYPES[type_plural], repo_id, authorized=self._authorized())
        commit = repo.resolve(revision)
        prefix = unquote(path or "").strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries, folders = [], set()
        for file_path, stored in sorted(commit.files.items()):
            if prefix and not file_path.startswith(prefix + "/"):
                continue
            rest = file_path[len(prefix) + 1:] if prefix else file_path
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(([prefix] if prefix else []) + parts[:depth])
                if (recursive or depth == 1) and folder not in folders:
                    folders.add(folder)
                    entries.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(),
                                    "size": 0, "path": folder})
            if recursive or len(parts) == 1:
                entries.append(self._file_entry(file_path, stored))
        if prefix and not entries:
            raise HubHTTPError(404, f"{prefix} does not exist", "EntryNotFound")
        self._send(200, entries)

    def paths_info(self, type_plural, repo_id, revision, query):
        repo = self.server.state.repo(REPO_TYPES[type_plural], repo_id, authorized=self._authorized())
        commit = repo.resolve(revision)
        body = self._json_body() or {k: v for k, v in query.items()}
        paths = body.get("paths") or []
        self._send(200, [self._file_entry(p, commit.files[p]) for p in paths if p in commit.files])

    @staticmethod
    def _file_entry(path: str, stored: StoredFile) -> dict:
        entry = {"type": "file", "oid": stored.git_oid, "size": len(stored.content), "path": path}
        if stored.lfs:
            entry["lfs"] = {"oid": stored.sha256, "size": len(stored.content), "pointerSize": 134}
        return entry

    # -- Spaces -----------------------------------------------------------------------------------------------------

    @staticmethod
    def _runtime(repo: Repo) -> dict:
        hardware = repo.space_settings["hardware"] or "cpu-basic"
        return {"stage": "RUNNING", "hardware": {"current": hardware, "requested": hardware},
                "storage": None, "gcTimeout": None, "replicas": {"current": 1, "requested": 1}}

    def space_runtime(self, repo_id, query):
        self._send(200, self._runtime(self.server.state.repo("space", repo_id, authorized=self._authorized())))

    def space_setting(self, repo_id, kind, query):
        self._require_write()
        repo = self.server.state.repo("space", repo_id)
        body = self._json_body()
        if kind in ("secrets", "variables"):
            if self.command == "DELETE":
                repo.space_settings[kind].pop(body.get("key"), None)
            else:
                repo.space_settings[kind][body["key"]] = body.get("value")
            self._send(200, {})
            return
        if kind == "hardware":
            repo.space_settings["hardware"] = body.get("flavor")
        self._send(200, self._runtime(repo))

    # -- README validation ------------------------------------------------------------------------------------------

    def validate_yaml(self, query):
        body = self._json_body()
        errors = readme_errors(body.get("content", ""), body.get("repoType", "model"))
        if errors:
            self._send(400, {"errors": [{"message": e} for e in errors]}, {"X-Error-Message": errors[0]})
        else:
            self._send(200, {"warnings": []})

    # -- uploads ----------------------------------------------------------------------------------------------------

    def preupload(self, type_plural, repo_id, revision, query):
        self._require_write()
        repo = self.server.state.repo(REPO_TYPES[type_plural], repo_id)
        commit = repo.resolve(revision) if unquote(revision) in repo.branches else None
        files = []
        for entry in self._json_body()["files"]:
            sample = base64.b64decode(entry["sample"])
            lfs = (any(fnmatch.fnmatch(entry["path"], p) for p in LFS_PATTERNS)
                   or entry["size"] >= LFS_SIZE_THRESHOLD or b"\0" in sample)
            existing = commit.files.get(entry["path"]) if commit else None
            oid = (existing.sha256 if existing.lfs else existing.git_oid) if existing else None
            files.append({"path": entry["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        self._send(200, {"files": files})

    def lfs_batch(self, type_prefix, repo_id, query):
        self._require_write()
        self.server.state.repo(REPO_TYPES.get((type_prefix or "").rstrip("/"), "model"), repo_id)
        body = self._json_body()
        if body.get("operation") != "upload":
            raise HubHTTPError(400, "Only uploads are supported by this server")
        objects = []
        for obj in body["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.server.state.lfs_objects:
                entry["actions"] = self._lfs_actions(obj["oid"], obj["size"])
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_actions(self, oid: str, size: int) -> dict:
        endpoint, chunk = self.server.endpoint, self.server.multipart_chunk_size
        verify = {"href": f"{endpoint}/lfs-verify/{oid}", "header": {}}
        if chunk is None or size <= chunk:
            return {"upload": {"href": f"{endpoint}/lfs-upload/{oid}", "header": {}}, "verify": verify}
        parts = -(-size // chunk)
        header = {"chunk_size": str(chunk)}
        header |= {f"{i:05d}": f"{endpoint}/lfs-part/{oid}/{i}" for i in range(1, parts + 1)}
        return {"upload": {"href": f"{endpoint}/lfs-complete/{oid}", "header": header}, "verify": verify}

    def lfs_upload(self, oid, query):
        content = self._body()
        if hashlib.sha256(content).hexdigest() != oid:
            raise HubHTTPError(400, "Uploaded content does not match its sha256 oid")
        self.server.state.lfs_objects[oid] = content
        self._send(200, {})

    def lfs_part(self, oid, number, query):
        content = self._body()
        self.server.state.multipart.setdefault(oid, {})[int(number)] = content
        self._send(200, {}, {"ETag": f'"{hashlib.md5(content).hexdigest()}"'})

    def lfs_complete(self, oid, query):
        body = self._json_body()
        stored = self.server.state.multipart.pop(oid, {})
        numbers = [part["partNumber"] for part in body.get("parts", [])]
        if sorted(numbers) != sorted(stored):
            raise HubHTTPError(400, f"Multipart upload of {oid} is incomplete")
        content = b"".join(stored[n] for n in sorted(stored))
        if hashlib.sha256(content).hexdigest() != oid:
            raise HubHTTPError(400, "Multipart content does not match its sha256 oid")
        self.server.state.lfs_objects[oid] = content
        self._send(200, {})

    def lfs_verify(self, oid, query):
        self._require_write()
        body = self._json_body()
        content = self.server.state.lfs_objects.get(oid)
        if content is None or len(content) != body.get("size"):
            raise HubHTTPError(404, f"LFS object {oid} was not uploaded")
        self._send(200, {})

    def commit(self, type_plural, repo_id, revision, query):
        self._require_write()
        repo_type = REPO_TYPES[type_plural]
        repo = self.server.state.repo(repo_type, repo_id)
        branch = unquote(revision)
        if branch not in repo.branches:
            raise HubHTTPError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        parent = header.get("parentCommit")
        if parent and parent != repo.branches[branch]:
            raise HubHTTPError(412, f"Parent commit {parent} is not the head of {branch}")
        added, deleted = self._operations(lines)
        if "README.md" in added:
            errors = readme_errors(added["README.md"].content.decode(), repo_type)
            if errors:
                raise HubHTTPError(400, "Invalid README.md metadata: " + "; ".join(errors))
        if query.get("create_pr", ["0"])[0] == "1":
            branch = f"refs/pr/{sum(b.startswith('refs/pr/') for b in repo.branches) + 1}"
            repo.branches[branch] = repo.branches[unquote(revision)]
        commit = self.server.state.commit(repo, branch, header.get("summary", ""), added, deleted)
        url = f"{self.server.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"
        pr_url = f"{url}/discussions/{branch.split('/')[-1]}" if branch.startswith("refs/pr/") else None
        self._send(200, {"success": True, "commitOid": commit.oid, "commitUrl": f"{url}/commit/{commit.oid}",
                         "pullRequestUrl": pr_url})

    def _operations(self, lines: list[dict]) -> tuple[dict[str, StoredFile], list[str]]:
        added: dict[str, StoredFile] = {}
        deleted: list[str] = []
        for line in lines:
            key, value = line["key"], line.get("value", {})
            if key == "file":
                added[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                content = self.server.state.lfs_objects.get(value["oid"])
                if content is None:
                    raise HubHTTPError(422, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                added[value["path"]] = StoredFile(content, lfs=True)
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
            elif key != "header":
                raise HubHTTPError(400, f"Unknown commit operation {key!r}")
        return added, deleted

    # -- downloads --------------------------------------------------------------------------------------------------

    def resolve(self, type_prefix, repo_id, revision, path, query):
        repo_type = REPO_TYPES.get((type_prefix or "").rstrip("/"), "model")
        repo = self.server.state.repo(repo_type, repo_id, authorized=self._authorized())
        commit = repo.resolve(revision)
        stored = commit.files.get(unquote(path))
        if stored is None:
            raise HubHTTPError(404, f"{path} does not exist at {revision}", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{stored.git_oid}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if stored.lfs:
            headers |= {"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(len(stored.content))}
        content, status = stored.content, 200
        range_match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if range_match:
            start = int(range_match.group(1))
            end = int(range_match.group(2)) if range_match.group(2) else len(content) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start:end + 1], 206
        self._send(status, headers=headers, body=content)

    def whoami(self, query):
        if self.server.token is not None and not self._authorized():
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        self._send(200, {"type": "user", "name": self.server.user, "orgs": [],
                         "auth": {"accessToken": {"role": "write"}}})

    def telemetry(self, path, query):
        self._send(200, {})


_ID = r"([^/]+/[^/]+?)"
ROUTES = [
    ("POST", r"/api/repos/create", HubRequestHandler.create_repo),
    ("DELETE", r"/api/repos/delete", HubRequestHandler.delete_repo),
    ("POST", r"/api/validate-yaml", HubRequestHandler.validate_yaml),
    ("GET", r"/api/whoami-v2", HubRequestHandler.whoami),
    ("POST", r"/api/telemetry/(.*)", HubRequestHandler.telemetry),
    ("HEAD", r"/api/telemetry/(.*)", HubRequestHandler.telemetry),
    ("GET", rf"/api/spaces/{_ID}/runtime", HubRequestHandler.space_runtime),
    ("POST", rf"/api/spaces/{_ID}/(secrets|variables|hardware|restart|sleeptime)", HubRequestHandler.space_setting),
    ("DELETE", rf"/api/spaces/{_ID}/(secrets|variables)", HubRequestHandler.space_setting),
    ("POST", rf"/api/(models|datasets|spaces)/{_ID}/preupload/([^/]+)", HubRequestHandler.preupload),
    ("POST", rf"/api/(models|datasets|spaces)/{_ID}/commit/([^/]+)", HubRequestHandler.commit),
    ("POST", rf"/api/(models|datasets|spaces)/{_ID}/branch/([^/]+)", HubRequestHandler.create_branch),
    ("GET", rf"/api/(models|datasets|spaces)/{_ID}/tree/([^/]+)(?:/(.*))?", HubRequestHandler.tree),
    ("POST", rf"/api/(models|datasets|spaces)/{_ID}/paths-info/([^/]+)", HubRequestHandler.paths_info),
    ("GET", rf"/api/(models|datasets|spaces)/{_ID}(?:/revision/([^/]+))?", HubRequestHandler.repo_info),
    ("POST", rf"/(datasets/|spaces/)?{_ID}\.git/info/lfs/objects/batch", HubRequestHandler.lfs_batch),
    ("PUT", r"/lfs-upload/([0-9a-f]{64})", HubRequestHandler.lfs_upload),
    ("PUT", r"/lfs-part/([0-9a-f]{64})/(\d+)", HubRequestHandler.lfs_part),
    ("POST", r"/lfs-complete/([0-9a-f]{64})", HubRequestHandler.lfs_complete),
    ("POST", r"/lfs-verify/([0-9a-f]{64})", HubRequestHandler.lfs_verify),
    ("HEAD", rf"/(datasets/|spaces/)?{_ID}/resolve/([^/]+)/(.+)", HubRequestHandler.resolve),
    ("GET", rf"/(datasets/|spaces/)?{_ID}/resolve/([^/]+)/(.+)", HubRequestHandler.resolve),
]


class HubServer(ThreadingHTTPServer):
    """The local Hub. `HubServer().start()` serves on a free port of 127.0.0.1 from a daemon thread.

    Args:
        token (`str`, *optional*): the write token clients must send; `None` accepts any caller.
        user (`str`): the account name `create_repo` uses when no organization is given.
        multipart_chunk_size (`int`, *optional*): LFS objects above this size are uploaded in parts.
    """

    daemon_threads = True

    def __init__(self, *, token: str | None = "hf_local_test_token", user: str = "tester",
                 multipart_chunk_size: int | None = None):
        super().__init__(("127.0.0.1", 0), HubRequestHandler)
        self.token, self.user, self.multipart_chunk_size = token, user, multipart_chunk_size
        self.state = HubState()
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self.serve_forever, name="local-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    # -- helpers for tests ------------------------------------------------------------------------------------------

    def reset(self) -> None:
        self.state.reset()
        self.multipart_chunk_size = None

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self.state.lock:
            return list(self.state.requests)

    def calls(self, method: str, pattern: str) -> list[str]:
        """Paths of the logged requests with this method whose path matches the regex `pattern`."""
        return [path for m, path in self.requests if m == method and re.search(pattern, path)]

    def seed_repo(self, repo_id: str, files: dict[str, bytes | str], *, repo_type: str = "model",
                  private: bool = False, message: str = "seed") -> str:
        """Create (or add a commit to) a repo with `files`, bypassing HTTP; returns the commit id."""
        with self.state.lock:
            repo = self.state.repos.get((repo_type, repo_id)) or self.state.create(
                repo_type, repo_id, private=private, sdk="gradio" if repo_type == "space" else None)
            added = {}
            for path, content in files.items():
                data = content.encode() if isinstance(content, str) else content
                added[path] = StoredFile(data, lfs=any(fnmatch.fnmatch(path, p) for p in LFS_PATTERNS))
            return self.state.commit(repo, "main", message, added, []).oid

    def files(self, repo_id: str, *, repo_type: str = "model", revision: str = "main") -> dict[str, StoredFile]:
        with self.state.lock:
            return dict(self.state.repo(repo_type, repo_id).resolve(revision).files)

    def commits(self, repo_id: str, *, repo_type: str = "model", branch: str = "main") -> list[Commit]:
        """The commits of `branch`, newest first."""
        with self.state.lock:
            repo = self.state.repo(repo_type, repo_id)
            history, oid = [], repo.branches.get(branch)
            while oid is not None:
                history.append(repo.commits[oid])
                oid = repo.commits[oid].parent
            return history


# -- pytest fixtures (registered in tests/conftest.py) ------------------------------------------------------------


@pytest.fixture(scope="session")
def hub_server_session():
    server = HubServer().start()
    yield server
    server.stop()


@pytest.fixture
def hub_server(hub_server_session, monkeypatch):
    """A fresh local Hub, with `huggingface_hub` (and `datasets`) pointed at it for this test only.

    `huggingface_hub` reads `HF_ENDPOINT`, `HF_HUB_OFFLINE` and `HF_HUB_DISABLE_XET` once, at import, and conftest
    imports it (through transformers) before any fixture runs, so setting the environment is not enough: the fixture
    also patches the module constants the client reads at call time (`constants.ENDPOINT`,
    `HUGGINGFACE_CO_URL_TEMPLATE`, `HF_HUB_OFFLINE`, `HF_HUB_DISABLE_XET`) and the endpoint of the module-level
    `HfApi` behind `create_repo()`, `upload_folder()`, ... The environment is set too, for subprocesses. Xet is off
    so that LFS files take the git-LFS batch flow this server speaks. `monkeypatch` restores everything afterwards.
    """
    from huggingface_hub import constants, hf_api

    server = hub_server_session
    server.reset()
    endpoint = server.endpoint
    for name, value in {"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
                        "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    try:
        import datasets.config
    except ImportError:
        pass
    else:
        monkeypatch.setattr(datasets.config, "HF_ENDPOINT", endpoint)
        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    yield server
