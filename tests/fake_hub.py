"""A local stand-in for the Hugging Face hub: the few endpoints a download touches, serving files from memory.

Point ``HF_ENDPOINT`` at it (``serve``); ``FakeHub.files`` maps ``(repo, path in repo)`` to the bytes served.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub(BaseHTTPRequestHandler):
    """The few Hugging Face endpoints a download touches: file HEAD/GET, repo info and file tree."""

    files: dict[tuple[str, str], bytes] = {}
    commit = "c" * 40

    def log_message(self, *args) -> None:
        pass

    def _reply(self, body: bytes, send_body: bool = True, extra: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _file(self, send_body: bool) -> None:
        path = self.path.split("?")[0]
        for (repo, name), data in self.files.items():
            if path in (f"/{repo}/resolve/main/{name}", f"/{repo}/resolve/{self.commit}/{name}"):
                etag = f'"{hashlib.sha256(data).hexdigest()}"'
                return self._reply(data, send_body, {"ETag": etag, "X-Repo-Commit": self.commit})
        self.send_response(404)
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
        self._file(send_body=False)

    def do_GET(self) -> None:  # noqa: N802
        parts = self.path.split("?")[0].split("/")
        if parts[1:3] != ["api", "models"]:
            return self._file(send_body=True)
        repo = "/".join(parts[3:5])
        names = {name: data for (owner, name), data in self.files.items() if owner == repo}
        if parts[5] == "tree":
            listing = [{"type": "file", "path": n, "size": len(d), "oid": _sha1(d)} for n, d in names.items()]
        else:
            listing = {"id": repo, "sha": self.commit, "siblings": [{"rfilename": n} for n in names]}
        self._reply(json.dumps(listing).encode(), extra={"Content-Type": "application/json"})


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@contextmanager
def serve(files: dict[tuple[str, str], bytes]) -> Iterator[str]:
    """Serve ``files`` on a free localhost port for the duration; yields the endpoint URL."""
    FakeHub.files = files
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
