"""Storage and README validation of the local Hub test server (tests/hub_server.py): repos as chains of commits of
files, LFS objects, and the metadata checks the Hub runs on README.md."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# The Hub's default .gitattributes: these paths always go through LFS.
LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.mlmodel",
    "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
    "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm",
    "*.xz", "*.zip", "*.zst", "*tfevents*", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.wav", "*.mp3",
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
# The Hub's licence ids, written out here on purpose (not imported from hf_distill.licenses): the server checks
# the library's cards independently, as the Hub would.
HUB_LICENSES = frozenset(
    """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
    afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0
    cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0
    cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0
    cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl
    gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr
    mpl-2.0 odc-by odbl openmdw-1.0 openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr
    deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4
    grok2-community gemma unknown other""".split()
)
SPACE_SDKS = ("gradio", "streamlit", "docker", "static")
SPACE_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
BASE_MODEL_RELATIONS = ("adapter", "merge", "quantized", "finetune")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


class HubHTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class StoredFile:
    content: bytes
    lfs: bool

    @property
    def git_oid(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.content) + self.content).hexdigest()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, StoredFile]
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    sdk: str | None = None
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    space_settings: dict = field(default_factory=lambda: {"secrets": {}, "variables": {}, "hardware": None})

    def resolve(self, revision: str) -> Commit:
        revision = unquote(revision)
        oid = self.branches.get(revision) or (revision if revision in self.commits else None)
        if oid is None:
            raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]


def front_matter(content: str) -> dict:
    """The YAML metadata block of a README, `{}` when there is none; `ValueError` when it does not parse."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(?:\n|$)", content, re.DOTALL)
    if not match:
        return {}
    data = yaml.safe_load(match.group(1))
    if data is not None and not isinstance(data, dict):
        raise ValueError("YAML metadata must be a mapping")
    return data or {}


def readme_errors(content: str, repo_type: str) -> list[str]:
    """What the Hub's README validation would reject (a useful subset, strict where the Hub is strict)."""
    try:
        meta = front_matter(content)
    except (yaml.YAMLError, ValueError) as error:
        return [f"Invalid YAML metadata: {error}"]
    errors = []
    license_id = meta.get("license")
    if license_id is not None and license_id not in HUB_LICENSES:
        errors.append(f'"license" must be one of the Hub licence ids, got {license_id!r}')
    if license_id == "other" and not meta.get("license_name"):
        errors.append('"license_name" is required when "license" is "other"')
    if "license_name" in meta and not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", str(meta["license_name"])):
        errors.append('"license_name" must be a lowercase slug')
    for key in ("base_model", "datasets"):
        values = meta.get(key)
        for value in [values] if isinstance(values, str) else values or []:
            if not isinstance(value, str) or not _REPO_ID.match(value):
                errors.append(f'"{key}" must be Hub repo ids, got {value!r}')
    relation = meta.get("base_model_relation")
    if relation is not None and (relation not in BASE_MODEL_RELATIONS or not meta.get("base_model")):
        errors.append(f'"base_model_relation" must be one of {BASE_MODEL_RELATIONS} and needs "base_model"')
    errors += _model_index_errors(meta.get("model-index"))
    if repo_type == "space":
        if meta.get("sdk") not in SPACE_SDKS:
            errors.append(f'"sdk" must be one of {SPACE_SDKS}')
        errors += [f'"{k}" must be one of {SPACE_COLORS}' for k in ("colorFrom", "colorTo")
                   if k in meta and meta[k] not in SPACE_COLORS]
        if len(str(meta.get("short_description", ""))) > 60:
            errors.append('"short_description" must be at most 60 characters')
    return errors


def _model_index_errors(model_index) -> list[str]:
    if model_index is None:
        return []
    try:
        for entry in model_index:
            assert isinstance(entry["name"], str)
            for result in entry["results"]:
                assert result["task"]["type"] and result["dataset"]["type"] and result["dataset"]["name"]
                for metric in result["metrics"]:
                    assert metric["type"] and isinstance(metric["value"], (int, float, str))
    except (AssertionError, KeyError, TypeError) as error:
        return [f'"model-index" is malformed ({type(error).__name__}: {error})']
    return []


class HubState:
    """Repos, LFS objects and the request log, shared by every handler thread."""

    def __init__(self):
        self.lock = threading.RLock()
        self.salt = secrets.token_hex(8)  # commit ids never repeat across server runs (the client caches by commit)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.repos: dict[tuple[str, str], Repo] = {}
            self.lfs_objects: dict[str, bytes] = {}
            self.multipart: dict[str, dict[int, bytes]] = {}
            self.requests: list[tuple[str, str]] = []

    def repo(self, repo_type: str, repo_id: str, *, authorized: bool = True) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authorized):
            raise HubHTTPError(404, f"Repository Not Found for url: {repo_type}s/{repo_id}.", "RepoNotFound")
        return repo

    def create(self, repo_type: str, repo_id: str, *, private: bool, sdk: str | None) -> Repo:
        repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, sdk=sdk)
        self.repos[(repo_type, repo_id)] = repo
        attributes = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS)
        self.commit(repo, "main", "initial commit", {".gitattributes": StoredFile(attributes.encode(), False)}, [])
        return repo

    def commit(
        self, repo: Repo, branch: str, message: str, added: dict[str, StoredFile], deleted: list[str]
    ) -> Commit:
        parent = repo.commits.get(repo.branches.get(branch, ""))
        files = dict(parent.files) if parent else {}
        for path in deleted:
            files = {p: f for p, f in files.items() if p != path and not p.startswith(path.rstrip("/") + "/")}
        files.update(added)
        digest = hashlib.sha1(f"{self.salt}{parent.oid if parent else ''}{message}{time.time_ns()}".encode())
        for path in sorted(files):
            digest.update(f"{path}:{files[path].git_oid}".encode())
        commit = Commit(digest.hexdigest(), parent.oid if parent else None, message, files,
                        time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit
