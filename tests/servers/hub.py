"""A Hugging Face Hub stand-in: serves local folders as model repos over the Hub's HTTP API.

Only the endpoints `huggingface_hub.HfFileSystem` reads with are answered, as the Hub documents
them (https://huggingface.co/docs/hub/api): repo info, tree listing (recursive, paginated with a
Link header), paths-info, and file download by `resolve` with HTTP ranges.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SHA = "0123456789abcdef0123456789abcdef01234567"
PAGE = 1000
_API = re.compile(r"^/api/models/([^/]+/[^/]+)(?:/(revision|tree|paths-info)/([^/]+)(?:/(.*))?)?$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class HubServer:
    """Serves `repos` ({"user/model": local folder}) on 127.0.0.1; counts requests by kind."""

    def __init__(self, repos: dict[str, str]) -> None:
        self.repos = repos
        self.requests: list[str] = []
        #: Answer ranged downloads with the whole file, as some servers and proxies do.
        self.ignore_ranges = False
        #: Paths inside a repo whose download is refused (403), as for a token without access.
        self.refused: set[str] = set()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub._answer(self, body=True)

            def do_HEAD(self) -> None:
                hub._answer(self, body=False)

            def do_POST(self) -> None:
                hub._answer(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, request: BaseHTTPRequestHandler, body: bool) -> None:
        url = urlsplit(request.path)
        path = unquote(url.path)
        self.requests.append(f"{request.command} {path}")
        api = _API.match(path)
        resolve = _RESOLVE.match(path)
        if api:
            repo, kind, _revision, inner = api.groups()
            if repo not in self.repos:
                return _json(request, {"error": "Repository not found"}, 404, body)
            root = self.repos[repo]
            if kind in (None, "revision"):
                return _json(request, {"id": repo, "modelId": repo, "sha": SHA}, 200, body)
            if kind == "tree":
                query = parse_qs(url.query)
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                entries = _tree(root, inner or "", recursive)
                if entries is None:
                    return _json(request, {"error": "Entry not found"}, 404, body)
                start = int(query.get("cursor", ["0"])[0])
                page = entries[start : start + PAGE]
                headers = {}
                if start + PAGE < len(entries):
                    following = f"{self.endpoint}{url.path}?recursive={str(recursive).lower()}"
                    headers["Link"] = f'<{following}&cursor={start + PAGE}>; rel="next"'
                return _json(request, page, 200, body, headers)
            length = int(request.headers.get("Content-Length") or 0)
            form = parse_qs(request.rfile.read(length).decode())
            wanted = form.get("paths", [])
            found = [e for p in wanted if (e := _describe(root, p)) is not None]
            return _json(request, found, 200, body)
        if resolve:
            repo, _revision, inner = resolve.groups()
            file = os.path.join(self.repos.get(repo, "/nonexistent"), inner)
            if inner in self.refused:
                return _json(request, {"error": "Access to this file is restricted"}, 403, body)
            if not os.path.isfile(file):
                request.send_response(404)
                request.send_header("X-Error-Code", "EntryNotFound")
                request.send_header("Content-Length", "0")
                request.end_headers()
                return None
            with open(file, "rb") as handle:
                data = handle.read()
            status, headers = 200, {"X-Repo-Commit": SHA, "ETag": f'"{_oid(data)}"'}
            ranged = re.match(r"bytes=(\d*)-(\d*)$", request.headers.get("Range", ""))
            if ranged and (ranged.group(1) or ranged.group(2)) and not self.ignore_ranges:
                first, last = ranged.groups()
                if first:
                    start, stop = int(first), int(last) + 1 if last else len(data)
                else:
                    start, stop = max(0, len(data) - int(last)), len(data)
                stop = min(stop, len(data))
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
                data, status = data[start:stop], 206
            request.send_response(status)
            for key, value in headers.items():
                request.send_header(key, value)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            if body:
                request.wfile.write(data)
            return None
        return _json(request, {"error": "not found"}, 404, body)


def _oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _describe(root: str, inner: str) -> dict[str, Any] | None:
    full = os.path.join(root, inner)
    if os.path.isdir(full):
        return {"type": "directory", "oid": SHA, "path": inner}
    if os.path.isfile(full):
        with open(full, "rb") as handle:
            data = handle.read()
        return {"type": "file", "oid": _oid(data), "size": len(data), "path": inner}
    return None


def _tree(root: str, inner: str, recursive: bool) -> list[dict[str, Any]] | None:
    folder = os.path.join(root, inner)
    if not os.path.isdir(folder):
        return None
    entries = []
    for name in sorted(os.listdir(folder)):
        relative = f"{inner}/{name}" if inner else name
        described = _describe(root, relative)
        if described is None:
            continue
        entries.append(described)
        if recursive and described["type"] == "directory":
            entries.extend(_tree(root, relative, True) or [])
    return entries


def _json(
    request: BaseHTTPRequestHandler,
    value: Any,
    status: int,
    body: bool,
    headers: dict[str, str] | None = None,
) -> None:
    data = json.dumps(value).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    if status == 404:
        request.send_header("X-Error-Code", "RepoNotFound")
    for key, value_ in (headers or {}).items():
        request.send_header(key, value_)
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    if body:
        request.wfile.write(data)
