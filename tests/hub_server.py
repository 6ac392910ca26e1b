"""A loopback stand-in for the Hugging Face Hub *write* API, for offline upload tests.

Stdlib only: a ``ThreadingHTTPServer`` on 127.0.0.1 (free port) in a daemon thread. It answers
what huggingface_hub 2.x calls during ``create_repo`` / ``create_branch`` / ``upload_folder``
(and so transformers/diffusers ``push_to_hub``, ``ModelCard.push_to_hub``):

    POST /api/repos/create                                   -> {"url", "name"}; makes the repo folder
    POST /api/validate-yaml                                  -> {"errors": [], "warnings": []}
    POST /api/{models|datasets|spaces}/{repo}/preupload/{rev} -> every file "regular" (inlined in the commit)
    POST /api/{models|datasets|spaces}/{repo}/branch/{name}   -> {} (branch folder made on first commit)
    POST /api/{models|datasets|spaces}/{repo}/commit/{rev}    -> NDJSON; base64 files written to disk
    POST /api/{models|datasets|spaces}/{repo}/discussions     -> {"num"}  (upload_folder(create_pr=True))
    GET  /api/{models|datasets|spaces}/{repo}/discussions/{n} -> the pull request's details

With hf_xet installed, ``upload_folder`` takes the pipelined path (preupload, then commit; for
``create_pr`` it opens the PR through ``discussions`` first and commits to ``refs/pr/N``); without
it, ``create_commit`` (validate-yaml for a README.md, preupload, commit with ``?create_pr=1``).

Files committed to ``main`` land in ``<root>/<repo_id>/`` (``<root>/datasets/<repo_id>/`` etc. for
other repo types); another revision lands in ``<root>/<repo_id>@<quoted revision>/``, e.g.
``me/model@dev`` or ``me/model@refs%2Fpr%2F1``.
Anything else is answered 404 with a JSON error and recorded in ``server.unhandled``. The stand-in
has no download endpoints: load what was uploaded from ``server.repo_path(repo_id)``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, quote, unquote, urlsplit

_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
# A repo id is "namespace/name" (the slash is tried first, so "me/commit" is a valid name) or a bare name.
_REPO_ID = r"([^/]+/[^/]+|[^/]+)"
_REPO_ACTION = re.compile(rf"^/api/(models|datasets|spaces)/{_REPO_ID}/(preupload|commit|branch)/(.+)$")
_DISCUSSIONS = re.compile(rf"^/api/(models|datasets|spaces)/{_REPO_ID}/discussions(?:/(\d+))?$")


class LoopbackHub:
    """The server; ``endpoint`` is its base URL, ``root`` the folder the repos are written to.

    ``create_repo("name")`` without a namespace makes ``<username>/name``, as the Hub does for the token's user.
    """

    def __init__(self, root: str | Path, username: str = "user"):
        self.root = Path(root)
        self.username = username
        self.root.mkdir(parents=True, exist_ok=True)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.unhandled: list[tuple[str, str]] = []  # the ones answered 404
        self.commits: list[dict] = []  # {"repo_id", "repo_type", "revision", "summary", "files", "create_pr"}
        self.discussions: dict[tuple[str, str], list[dict]] = {}  # (repo_type, repo_id) -> pull requests
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.endpoint = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="loopback-hub", daemon=True)

    def start(self) -> "LoopbackHub":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "LoopbackHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- storage ------------------------------------------------------------------------------
    def repo_path(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> Path:
        base = self.root if repo_type in (None, "model") else self.root / f"{repo_type}s"
        name = repo_id if revision == "main" else f"{repo_id}@{quote(revision, safe='')}"
        return base / name

    def _open_pr(self, repo_type: str, repo_id: str, title: str) -> int:
        with self._lock:
            prs = self.discussions.setdefault((repo_type, repo_id), [])
            prs.append({"title": title, "createdAt": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
            return len(prs)


def _make_handler(hub: LoopbackHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: avoid 40 ms delayed-ACK stalls

        def log_message(self, format, *args):  # keep pytest output clean
            pass

        # -- plumbing -------------------------------------------------------------------------
        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status >= 400:
                self.send_header("X-Error-Message", payload.get("error", ""))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _not_found(self, path: str) -> None:
            with hub._lock:
                hub.unhandled.append((self.command, path))
            self._reply(404, {"error": f"loopback hub: no handler for {self.command} {path}"})

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            path, query = url.path, parse_qs(url.query)
            with hub._lock:
                hub.requests.append((self.command, path))
            body = self._body()
            discussion = _DISCUSSIONS.match(path)
            if discussion is not None:
                return self._discussions(*discussion.groups(), body)
            if self.command != "POST":
                return self._not_found(path)
            if path == "/api/repos/create":
                return self._create_repo(json.loads(body or b"{}"))
            if path == "/api/validate-yaml":
                return self._reply(200, {"errors": [], "warnings": []})
            match = _REPO_ACTION.match(path)
            if match is None:
                return self._not_found(path)
            kind, repo_id, action, revision = match.groups()
            repo_type, revision = _REPO_TYPES[kind], unquote(revision)
            if not hub.repo_path(repo_id, repo_type).is_dir():
                return self._reply(404, {"error": f"Repository {repo_id} not found"})
            if action == "preupload":
                files = json.loads(body or b"{}").get("files", [])
                return self._reply(200, {"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                ]})
            if action == "branch":
                return self._reply(200, {})
            create_pr = query.get("create_pr", ["0"])[0] == "1"
            return self._commit(kind, repo_id, repo_type, revision, create_pr, body)

        def _discussions(self, kind: str, repo_id: str, num: str | None, body: bytes) -> None:
            repo_type = _REPO_TYPES[kind]
            if not hub.repo_path(repo_id, repo_type).is_dir():
                return self._reply(404, {"error": f"Repository {repo_id} not found"})
            if num is None and self.command == "POST":
                payload = json.loads(body or b"{}")
                if not payload.get("pullRequest"):
                    return self._not_found(self.path)  # plain discussions are not modelled
                return self._reply(200, {"num": hub._open_pr(repo_type, repo_id, payload.get("title", ""))})
            prs = hub.discussions.get((repo_type, repo_id), [])
            if num is None or self.command != "GET" or not 1 <= int(num) <= len(prs):
                return self._not_found(self.path)
            pr = prs[int(num) - 1]
            self._reply(200, {
                "num": int(num), "title": pr["title"], "isPullRequest": True, "status": "draft",
                "createdAt": pr["createdAt"], "author": {"name": "loopback"},
                "repo": {"name": repo_id, "type": repo_type}, "events": [],
                "changes": {"base": "refs/heads/main"}, "filesWithConflicts": [],
            })

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch

        # -- endpoints ------------------------------------------------------------------------
        def _create_repo(self, payload: dict) -> None:
            name, org = payload.get("name"), payload.get("organization")
            if not name:
                return self._reply(400, {"error": "name is required"})
            repo_id = f"{org or hub.username}/{name}"
            if ".." in repo_id.split("/") or "@" in repo_id:
                return self._reply(400, {"error": f"invalid repo id {repo_id!r}"})
            repo_type = payload.get("type") or "model"
            hub.repo_path(repo_id, repo_type).mkdir(parents=True, exist_ok=True)
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            self._reply(200, {"url": f"{hub.endpoint}/{prefix}{repo_id}", "name": repo_id})

        def _commit(self, kind: str, repo_id: str, repo_type: str, revision: str, create_pr: bool, body: bytes) -> None:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = next((line["value"] for line in lines if line.get("key") == "header"), {})
            if any(line.get("key") == "lfsFile" for line in lines):
                return self._reply(400, {"error": "loopback hub: LFS uploads are not supported (preupload said 'regular')"})
            pr_num = hub._open_pr(repo_type, repo_id, header.get("summary", "")) if create_pr else None
            with hub._lock:
                oid = hashlib.sha1(body + str(len(hub.commits)).encode()).hexdigest()
                target_rev = f"refs/pr/{pr_num}" if create_pr else revision
                folder = hub.repo_path(repo_id, repo_type, target_rev)
                written = []
                for line in lines:
                    key, value = line.get("key"), line.get("value", {})
                    if key not in ("file", "deletedFile", "deletedFolder"):
                        continue
                    rel = PurePosixPath(value["path"])
                    if rel.is_absolute() or ".." in rel.parts:
                        return self._reply(400, {"error": f"invalid path in repo: {value['path']!r}"})
                    target = folder / rel
                    if key == "file":
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(base64.b64decode(value["content"]))
                        written.append(str(rel))
                    elif key == "deletedFolder" and target.is_dir():
                        shutil.rmtree(target)
                    elif target.is_file():
                        target.unlink()
                hub.commits.append({"repo_id": repo_id, "repo_type": repo_type, "revision": target_rev,
                                    "summary": header.get("summary"), "files": written, "create_pr": create_pr})
            prefix = "" if repo_type == "model" else f"{kind}/"
            reply = {"commitUrl": f"{hub.endpoint}/{prefix}{repo_id}/commit/{oid}", "commitOid": oid, "success": True}
            if create_pr:
                reply["pullRequestUrl"] = f"{hub.endpoint}/{prefix}{repo_id}/discussions/{pr_num}"
            self._reply(200, reply)

    return Handler
