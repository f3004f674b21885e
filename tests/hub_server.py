"""A small Hugging Face Hub-compatible HTTP server for tests (standard library only, in memory).

It speaks the subset of the Hub protocol that huggingface_hub 2.x, transformers' ``push_to_hub`` /
``from_pretrained`` and datasets' ``push_to_hub`` / ``load_dataset`` use, so tests exercise the real
clients over real HTTP on 127.0.0.1 -- no mocks. Point the clients at it with
``HF_ENDPOINT=http://127.0.0.1:<port>`` (set before any HF library is imported: they read it once)
and ``HF_HUB_DISABLE_XET=1`` (otherwise LFS files go through Xet, which this server does not speak).

Endpoints (``{t}`` is ``model``/``dataset``/``space``, ``{prefix}`` is ``""``/``datasets/``/``spaces/``):

- ``GET /api/whoami-v2``, ``POST /api/validate-yaml``
- ``POST /api/repos/create`` (409 with ``url`` if it exists), ``DELETE /api/repos/delete``,
  ``PUT /api/{t}s/{repo}/settings`` (``private``)
- ``GET|HEAD /api/{t}s/{repo}[/revision/{rev}]`` (id, sha, siblings, private, ...)
- ``GET /api/{t}s/{repo}/tree/{rev}[/{path}]`` (``recursive``, ``expand``), ``POST .../paths-info/{rev}``,
  ``GET .../refs``, ``GET .../commits/{rev}``
- ``POST|DELETE .../branch/{name}``, ``POST|DELETE .../tag/{name}``
- ``POST .../preupload/{rev}`` (``uploadMode`` lfs for LFS patterns, binary samples or >= 10 MB),
  ``POST .../commit/{rev}`` (ndjson ``header``/``file``/``lfsFile``/``deletedFile``/``deletedFolder``;
  ``parentCommit`` that is not the branch head -> 412)
- ``POST /{prefix}{repo}.git/info/lfs/objects/batch`` -> ``PUT /__lfs/{oid}`` upload target (sha256 checked)
- ``GET|HEAD /{prefix}{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag``,
  ``X-Linked-Size``, ``Range`` (206)

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) and
``X-Error-Message``; HEAD replies never have a body. Private repos answer 401 ``RepoNotFound`` to anyone
but their owner, like the Hub.

Run it by hand: ``python tests/hub_server.py --port 8765`` then ``HF_ENDPOINT=http://127.0.0.1:8765
HF_HUB_DISABLE_XET=1 HF_TOKEN=hf_pixeltok_test_token ...``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import fnmatch
import hashlib
import itertools
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

DEFAULT_TOKEN = "hf_pixeltok_test_token"
DEFAULT_USER = "pixeltok-tester"
DEFAULT_ORG = "pixeltok-org"

REPO_TYPES = ("model", "dataset", "space")
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# Files the Hub stores through LFS (the patterns of the Hub's default .gitattributes, abridged).
LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
    "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "*.tar.*", "*.tar", "*.tflite",
    "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
# Path segments that follow a repo id in /api/{t}s/{repo}/... routes (to tell "name" from "ns/name").
API_KEYWORDS = {
    "revision", "tree", "paths-info", "refs", "commits", "preupload", "commit", "branch", "tag", "settings",
}


def _git_blob_oid(data: bytes) -> str:
    """Git's blob id: sha1 of ``b"blob <len>\\0" + data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class FileEntry:
    """One file at one commit. ``lfs_oid`` is the sha256 of the content for LFS files, else None."""

    data: bytes
    oid: str  # git blob id (of the LFS pointer for LFS files, of the content otherwise)
    lfs_oid: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @classmethod
    def regular(cls, data: bytes) -> "FileEntry":
        return cls(data=data, oid=_git_blob_oid(data))

    @classmethod
    def lfs(cls, data: bytes, sha256: str) -> "FileEntry":
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n".encode()
        return cls(data=data, oid=_git_blob_oid(pointer), lfs_oid=sha256)

    def pointer_size(self) -> int:
        return len(f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.lfs_oid}\nsize {self.size}\n")


@dataclass
class Commit:
    sha: str
    parent: str | None
    files: dict[str, FileEntry]
    title: str
    message: str
    author: str
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    owner: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)


class HubError(Exception):
    """An HTTP error reply: status, message and the Hub's ``X-Error-Code``."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubState:
    """All repos, commits and LFS objects, guarded by one lock."""

    def __init__(self, tokens: dict[str, str], orgs: dict[str, list[str]]):
        self.tokens = dict(tokens)
        self.orgs = {user: list(o) for user, o in orgs.items()}
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.lock = threading.RLock()
        self._counter = itertools.count()

    # ---- identity -------------------------------------------------------------------------
    def user_for(self, authorization: str | None) -> str | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        return self.tokens.get(authorization.split(" ", 1)[1].strip())

    def can_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and (namespace == user or namespace in self.orgs.get(user, []))

    # ---- repos ----------------------------------------------------------------------------
    def get_repo(self, repo_type: str, repo_id: str, user: str | None, write: bool = False) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        visible = repo is not None and (not repo.private or self.can_write(user, repo.owner))
        if not visible:
            # Like the Hub: an anonymous caller cannot tell a private repo from a missing one.
            raise HubError(401 if user is None else 404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        if write and not self.can_write(user, repo.owner):
            raise HubError(403, f"You don't have the rights to write to {repo_id}", None)
        return repo

    def new_commit(self, repo: Repo, parent: str | None, files: dict[str, FileEntry], title: str, message: str,
                   author: str) -> Commit:
        listing = "".join(f"{p}\0{f.oid}\n" for p, f in sorted(files.items()))
        seed = f"{repo.repo_type}/{repo.repo_id}\0{parent}\0{title}\0{next(self._counter)}\0{listing}"
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, files, title, message, author, _now())
        repo.commits[commit.sha] = commit
        return commit

    def resolve_revision(self, repo: Repo, revision: str) -> Commit:
        rev = revision
        for prefix in ("refs/heads/", "refs/tags/"):
            if rev.startswith(prefix):
                rev = rev[len(prefix):]
        if rev in repo.branches:
            return repo.commits[repo.branches[rev]]
        if rev in repo.tags:
            return repo.commits[repo.tags[rev]]
        if rev in repo.commits:
            return repo.commits[rev]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def last_commit_of(self, repo: Repo, head: Commit, path: str) -> Commit:
        """The newest commit on ``head``'s history after which ``path`` (file or folder prefix) no longer changed."""

        def snapshot(c: Commit):
            return tuple(sorted((p, f.oid) for p, f in c.files.items() if p == path or p.startswith(path + "/")))

        current, state = head, snapshot(head)
        while current.parent is not None:
            parent = repo.commits[current.parent]
            if snapshot(parent) != state:
                return current
            current = parent
        return current


def _file_json(path: str, entry: FileEntry, last: Commit | None = None) -> dict:
    d = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
    if entry.lfs_oid is not None:
        d["lfs"] = {"oid": entry.lfs_oid, "size": entry.size, "pointerSize": entry.pointer_size()}
    if last is not None:
        d["lastCommit"] = {"id": last.sha, "title": last.title, "date": last.date}
    return d


def _folder_json(path: str, commit: Commit, last: Commit | None = None) -> dict:
    d = {"type": "directory", "oid": hashlib.sha1(f"{commit.sha}\0{path}".encode()).hexdigest(), "size": 0,
         "path": path}
    if last is not None:
        d["lastCommit"] = {"id": last.sha, "title": last.title, "date": last.date}
    return d


def _folders(files: dict[str, FileEntry]) -> set[str]:
    out = set()
    for p in files:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return out


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the clients reuse connections
    server: "_Server"

    def log_message(self, format, *args):  # noqa: A002 - quiet; requests are recorded in server.log
        pass

    # ---- plumbing --------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.server.log.append((self.command, self.path, status))

    def _json(self, obj, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _handle(self) -> None:
        try:
            body = self._read_body() if self.command in ("POST", "PUT", "DELETE") else b""
            self._route(body)
        except HubError as e:
            headers = {"X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
            self._json({"error": e.message}, e.status, headers)
        except Exception as e:  # noqa: BLE001 - a server bug must reach the test as a 500, not a hang
            self._json({"error": f"{type(e).__name__}: {e}"}, 500)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

    # ---- routing ---------------------------------------------------------------------------
    def _route(self, body: bytes) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        st = self.server.state
        user = st.user_for(self.headers.get("Authorization"))
        m = self.command

        if parts[:1] == ["api"]:
            rest = parts[1:]
            if rest == ["whoami-v2"] and m == "GET":
                return self._whoami(user)
            if rest == ["validate-yaml"] and m == "POST":
                return self._validate_yaml(body)
            if rest == ["repos", "create"] and m == "POST":
                return self._create_repo(user, json.loads(body or b"{}"))
            if rest == ["repos", "delete"] and m == "DELETE":
                return self._delete_repo(user, json.loads(body or b"{}"))
            if rest and rest[0].endswith("s") and rest[0][:-1] in REPO_TYPES and len(rest) >= 2:
                repo_type = rest[0][:-1]
                ids = rest[1:]
                if len(ids) >= 2 and ids[1] not in API_KEYWORDS:
                    repo_id, tail = f"{ids[0]}/{ids[1]}", ids[2:]
                else:
                    repo_id, tail = ids[0], ids[1:]
                return self._repo_api(m, repo_type, repo_id, tail, query, body, user)
            raise HubError(404, f"Not found: {url.path}")

        if parts[:1] == ["__lfs"] and m == "PUT" and len(parts) == 2:
            return self._lfs_put(parts[1], body)

        # /{prefix}{repo}.git/info/lfs/objects/batch  and  /{prefix}{repo}/resolve/{rev}/{path}
        repo_type = "model"
        if parts and parts[0] in ("datasets", "spaces"):
            repo_type, parts = parts[0][:-1], parts[1:]
        if len(parts) >= 4 and parts[-4:] == ["info", "lfs", "objects", "batch"] and parts[-5].endswith(".git"):
            repo_id = "/".join(parts[:-5] + [parts[-5][: -len(".git")]])
            return self._lfs_batch(repo_type, repo_id, json.loads(body or b"{}"), user)
        if "resolve" in parts[1:3] and m in ("GET", "HEAD"):
            i = parts.index("resolve", 1)
            repo_id, rev, path = "/".join(parts[:i]), parts[i + 1], "/".join(parts[i + 2:])
            return self._resolve(repo_type, repo_id, rev, path, user)
        raise HubError(404, f"Not found: {url.path}")

    # ---- account ---------------------------------------------------------------------------
    def _whoami(self, user: str | None) -> None:
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        orgs = [{"type": "org", "name": o, "roleInOrg": "admin"} for o in self.server.state.orgs.get(user, [])]
        self._json({"type": "user", "id": user, "name": user, "fullname": user, "orgs": orgs,
                    "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})

    def _validate_yaml(self, body: bytes) -> None:
        content = json.loads(body or b"{}").get("content", "")
        if not content.startswith("---"):
            return self._json({"errors": [], "warnings": [{"message": "Empty or missing yaml metadata in repo card"}]})
        try:
            meta = yaml.safe_load(content.split("---", 2)[1])
        except (yaml.YAMLError, IndexError) as e:
            return self._json({"errors": [{"message": f"Invalid YAML: {e}"}], "warnings": []}, 400)
        if meta is not None and not isinstance(meta, dict):
            return self._json({"errors": [{"message": "YAML metadata must be a mapping"}], "warnings": []}, 400)
        self._json({"errors": [], "warnings": []})

    def _create_repo(self, user: str | None, payload: dict) -> None:
        st = self.server.state
        if user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type: {repo_type}")
        namespace = payload.get("organization") or user
        name = payload.get("name") or ""
        if not name or "/" in name:
            raise HubError(400, f"Invalid repo name: {name!r}")
        if not st.can_write(user, namespace):
            raise HubError(403, f"You don't have the rights to create a repo under {namespace}")
        repo_id = f"{namespace}/{name}"
        url = f"{self.server.base_url}/{URL_PREFIX[repo_type]}{repo_id}"
        with st.lock:
            if (repo_type, repo_id) in st.repos:
                return self._json({"error": "You already created this repo", "url": url}, 409)
            repo = Repo(repo_type, repo_id, namespace, payload.get("visibility", "public") == "private" or
                        bool(payload.get("private")), _now())
            first = st.new_commit(repo, None, {".gitattributes": FileEntry.regular(GITATTRIBUTES)},
                                  "initial commit", "", user)
            repo.branches["main"] = first.sha
            st.repos[(repo_type, repo_id)] = repo
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self, user: str | None, payload: dict) -> None:
        st = self.server.state
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or user}/{payload.get('name')}"
        with st.lock:
            st.get_repo(repo_type, repo_id, user, write=True)
            del st.repos[(repo_type, repo_id)]
        self._json({})

    # ---- /api/{t}s/{repo}/... ----------------------------------------------------------------
    def _repo_api(self, m, repo_type, repo_id, tail, query, body, user) -> None:
        st = self.server.state
        with st.lock:
            repo = st.get_repo(repo_type, repo_id, user, write=m in ("POST", "PUT", "DELETE")
                               and tail[:1] != ["paths-info"])
            if not tail or tail[0] == "revision":
                if m not in ("GET", "HEAD"):
                    raise HubError(405, "Method not allowed")
                rev = tail[1] if len(tail) > 1 else "main"
                return self._repo_info(repo, st.resolve_revision(repo, rev))
            op = tail[0]
            if op == "tree" and m == "GET":
                return self._tree(repo, st.resolve_revision(repo, tail[1]), "/".join(tail[2:]).strip("/"), query)
            if op == "paths-info" and m == "POST":
                return self._paths_info(repo, st.resolve_revision(repo, tail[1]), body)
            if op == "refs" and m == "GET":
                branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.branches.items()]
                tags = [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": s} for t, s in repo.tags.items()]
                return self._json({"branches": branches, "converts": [], "tags": tags, "pullRequests": []})
            if op == "commits" and m == "GET":
                c, out = st.resolve_revision(repo, tail[1] if len(tail) > 1 else "main"), []
                while c is not None:
                    out.append({"id": c.sha, "authors": [{"user": c.author}], "date": c.date, "title": c.title,
                                "message": c.message})
                    c = repo.commits[c.parent] if c.parent else None
                return self._json(out)
            if op == "preupload" and m == "POST":
                return self._preupload(repo, tail[1], json.loads(body or b"{}"))
            if op == "commit" and m == "POST":
                if _truthy((query.get("create_pr") or [None])[0]):
                    raise HubError(400, "This test server does not support pull requests (create_pr)")
                return self._commit(repo, tail[1], body, user)
            if op == "branch" and len(tail) == 2:
                return self._branch(repo, tail[1], m, json.loads(body or b"{}"))
            if op == "tag" and len(tail) == 2:
                return self._tag(repo, tail[1], m, json.loads(body or b"{}"))
            if op == "settings" and m == "PUT":
                payload = json.loads(body or b"{}")
                if "private" in payload:
                    repo.private = bool(payload["private"])
                if "visibility" in payload:
                    repo.private = payload["visibility"] == "private"
                return self._json({})
        raise HubError(404, f"Not found: {self.path}")

    def _repo_info(self, repo: Repo, commit: Commit) -> None:
        siblings = []
        for p, f in sorted(commit.files.items()):
            s = {"rfilename": p, "size": f.size, "blobId": f.oid}
            if f.lfs_oid:
                s["lfs"] = {"sha256": f.lfs_oid, "size": f.size, "pointerSize": f.pointer_size()}
            siblings.append(s)
        card = None
        if "README.md" in commit.files:
            text = commit.files["README.md"].data.decode("utf-8", "replace")
            if text.startswith("---"):
                try:
                    card = yaml.safe_load(text.split("---", 2)[1])
                except yaml.YAMLError:
                    card = None
        info = {"_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
                "author": repo.owner, "sha": commit.sha, "lastModified": commit.date, "createdAt": repo.created_at,
                "private": repo.private, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
                "tags": (card or {}).get("tags") or [], "siblings": siblings}
        if isinstance(card, dict):
            info["cardData"] = card
        self._json(info)

    def _tree(self, repo: Repo, commit: Commit, path: str, query: dict) -> None:
        recursive = _truthy((query.get("recursive") or [None])[0])
        expand = _truthy((query.get("expand") or [None])[0])
        folders = _folders(commit.files)
        if path and path not in folders:
            raise HubError(404, f"{path} does not exist on {commit.sha}", "EntryNotFound")
        prefix = f"{path}/" if path else ""

        def wanted(p: str) -> bool:
            return p.startswith(prefix) and (recursive or "/" not in p[len(prefix):])

        last = (lambda p: self.server.state.last_commit_of(repo, commit, p)) if expand else (lambda p: None)
        out = [_folder_json(d, commit, last(d)) for d in sorted(folders) if wanted(d)]
        out += [_file_json(p, f, last(p)) for p, f in sorted(commit.files.items()) if wanted(p)]
        self._json(out)

    def _paths_info(self, repo: Repo, commit: Commit, body: bytes) -> None:
        if self.headers.get("Content-Type", "").startswith("application/json"):
            payload = json.loads(body or b"{}")
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        else:
            form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), _truthy((form.get("expand") or [None])[0])
        folders, out = _folders(commit.files), []
        for p in dict.fromkeys(x.strip("/") for x in paths):
            last = self.server.state.last_commit_of(repo, commit, p) if expand else None
            if p in commit.files:
                out.append(_file_json(p, commit.files[p], last))
            elif p in folders:
                out.append(_folder_json(p, commit, last))
        self._json(out)

    def _branch(self, repo: Repo, name: str, m: str, payload: dict) -> None:
        if m == "POST":
            if name in repo.branches:
                raise HubError(409, f"Branch {name} already exists")
            start = self.server.state.resolve_revision(repo, payload.get("startingPoint") or "main")
            repo.branches[name] = start.sha
            return self._json({})
        if m == "DELETE":
            if name not in repo.branches or name == "main":
                raise HubError(404 if name not in repo.branches else 403, f"Cannot delete branch {name}",
                               "RevisionNotFound" if name not in repo.branches else None)
            del repo.branches[name]
            return self._json({})
        raise HubError(405, "Method not allowed")

    def _tag(self, repo: Repo, name: str, m: str, payload: dict) -> None:
        if m == "POST":  # POST .../tag/{revision} {"tag": name}
            tag = payload.get("tag")
            if not tag:
                raise HubError(400, "Missing 'tag'")
            if tag in repo.tags:
                raise HubError(409, f"Tag {tag} already exists")
            repo.tags[tag] = self.server.state.resolve_revision(repo, name).sha
            return self._json({})
        if m == "DELETE":
            if name not in repo.tags:
                raise HubError(404, f"Tag {name} not found", "RevisionNotFound")
            del repo.tags[name]
            return self._json({})
        raise HubError(405, "Method not allowed")

    # ---- uploads -----------------------------------------------------------------------------
    def _preupload(self, repo: Repo, revision: str, payload: dict) -> None:
        try:
            files = self.server.state.resolve_revision(repo, revision).files
        except HubError:
            files = {}  # a branch that a commit will create (create_pr) -- nothing to compare against
        out = []
        for f in payload.get("files", []):
            path, size = f["path"], int(f.get("size", 0))
            sample = base64.b64decode(f.get("sample", ""))
            lfs = (size >= LFS_SIZE_THRESHOLD or b"\0" in sample
                   or any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS))
            existing = files.get(path)
            oid = None
            if existing is not None:
                oid = existing.lfs_oid if lfs else (existing.oid if existing.lfs_oid is None else None)
            out.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json({"files": out, "commitOid": None})

    def _lfs_batch(self, repo_type: str, repo_id: str, payload: dict, user: str | None) -> None:
        st = self.server.state
        with st.lock:
            st.get_repo(repo_type, repo_id, user, write=payload.get("operation") == "upload")
            objects = []
            for o in payload.get("objects", []):
                oid, size = o["oid"], int(o["size"])
                entry = {"oid": oid, "size": size, "authenticated": True}
                if payload.get("operation") == "upload":
                    if oid not in st.lfs_objects:
                        entry["actions"] = {"upload": {"href": f"{self.server.base_url}/__lfs/{oid}", "header": {}}}
                elif oid in st.lfs_objects:
                    entry["actions"] = {"download": {"href": f"{self.server.base_url}/__lfs/{oid}", "header": {}}}
                else:
                    entry["error"] = {"code": 404, "message": "Object does not exist"}
                objects.append(entry)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
                   content_type="application/vnd.git-lfs+json")

    def _lfs_put(self, oid: str, body: bytes) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, f"LFS object content does not match its oid {oid}")
        with self.server.state.lock:
            self.server.state.lfs_objects[oid] = body
        self._send(200, b"")

    def _commit(self, repo: Repo, revision: str, body: bytes, user: str) -> None:
        st = self.server.state
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first ndjson line of a commit must be its header")
        header = lines[0]["value"]
        branch = revision[len("refs/heads/"):] if revision.startswith("refs/heads/") else revision
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision} (commits go to an existing branch)", "RevisionNotFound")
        head = repo.commits[repo.branches[branch]]
        parent = header.get("parentCommit")
        if parent is not None and parent != head.sha:
            raise HubError(412, f"A commit has happened since. Please refresh and try again. "
                                f"(parentCommit {parent} is not the head {head.sha} of {branch})")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "")
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding for {path}: {value.get('encoding')}")
                files[path] = FileEntry.regular(base64.b64decode(value["content"]))
            elif key == "lfsFile":
                data = st.lfs_objects.get(value["oid"])
                if data is None:
                    raise HubError(422, f"LFS object {value['oid']} for {path} was never uploaded")
                files[path] = FileEntry.lfs(data, value["oid"])
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                gone = [p for p in files if p.startswith(prefix)]
                if not gone:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in gone:
                    del files[p]
            else:
                raise HubError(400, f"Unknown commit operation key: {key!r}")
        commit = st.new_commit(repo, head.sha, files, header.get("summary", ""), header.get("description", ""), user)
        repo.branches[branch] = commit.sha
        url = f"{self.server.base_url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.sha}"
        self._json({"success": True, "commitOid": commit.sha, "commitUrl": url, "pullRequestUrl": None})

    # ---- downloads ---------------------------------------------------------------------------
    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str, user: str | None) -> None:
        st = self.server.state
        with st.lock:
            repo = st.get_repo(repo_type, repo_id, user)
            commit = st.resolve_revision(repo, revision)
            entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path} at {revision}", "EntryNotFound",)
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{entry.oid}"', "Accept-Ranges": "bytes"}
        if entry.lfs_oid is not None:
            headers.update({"X-Linked-Etag": f'"{entry.lfs_oid}"', "X-Linked-Size": str(entry.size)})
        data, status = entry.data, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and "," not in rng:
            start_s, end_s = rng[len("bytes="):].split("-", 1)
            n = len(data)
            if start_s == "":
                start, end = max(0, n - int(end_s)), n - 1
            else:
                start, end = int(start_s), min(int(end_s), n - 1) if end_s else n - 1
            if start >= n and n > 0 or start > end and n > 0:
                headers["Content-Range"] = f"bytes */{n}"
                return self._send(416, b"", headers)
            headers["Content-Range"] = f"bytes {start}-{end}/{n}"
            data, status = data[start:end + 1], 206
        self._send(status, data, headers, content_type="application/octet-stream")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState
    base_url: str
    log: list


class HubServer:
    """In-memory Hub on ``127.0.0.1``. ``url`` is the value for ``HF_ENDPOINT``; ``token`` writes as ``user``.

    The socket is bound (and its port known) on construction, so ``HF_ENDPOINT`` can be set before any HF
    library is imported; ``start()`` begins serving in a daemon thread.
    """

    def __init__(self, port: int = 0, token: str = DEFAULT_TOKEN, user: str = DEFAULT_USER,
                 orgs: tuple[str, ...] = (DEFAULT_ORG,), extra_tokens: dict[str, str] | None = None):
        self.token, self.user = token, user
        self.state = HubState({token: user, **(extra_tokens or {})}, {user: list(orgs)})
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.state = self.state
        self._httpd.log = []
        self.port = self._httpd.server_address[1]
        self.url = self._httpd.base_url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    @property
    def log(self) -> list[tuple[str, str, int]]:
        """Every request served: ``(method, path, status)``."""
        return self._httpd.log

    def start(self) -> "HubServer":
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    import argparse
    import time

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    server = HubServer(port=args.port).start()
    print(f"HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1 HF_TOKEN={server.token}  (user {server.user})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
