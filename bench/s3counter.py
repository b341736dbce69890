"""An S3 server (moto's, as `devstack.start_moto` runs it) that counts the requests made on
one bucket, for the data-set benchmark's storage requests per item.

    python bench/s3counter.py PORT BUCKET

Every request whose path names `BUCKET` (path-style addressing, as the service uses with an
endpoint URL) is counted by operation: `LIST` (a GET of the bucket: a listing), `HEAD` and
`GET` (of an object), `PUT` and `other`. `GET /__counts` answers the counts as JSON and
`DELETE /__counts` sets them to zero; everything else is moto's.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

COUNTS = "/__counts"


def operation(method: str, path: str, bucket: str) -> str | None:
    """What a request on `path` does to `bucket` (None: another bucket's, or none)."""
    parts = path.lstrip("/").split("/", 1)
    if parts[0] != bucket:
        return None
    on_object = len(parts) == 2 and parts[1] != ""
    if method == "GET":
        return "GET" if on_object else "LIST"
    if method == "HEAD" and on_object:
        return "HEAD"
    return "PUT" if method == "PUT" else "other"


class Counting:
    """WSGI middleware: count, then hand the request to moto."""

    def __init__(self, app, bucket: str) -> None:
        self.app, self.bucket = app, bucket
        self.counts: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if path == COUNTS:
            with self.lock:
                body = json.dumps(dict(self.counts)).encode()
                if method == "DELETE":
                    self.counts.clear()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        op = operation(method, path, self.bucket)
        if op is not None:
            with self.lock:
                self.counts[op] += 1
        return self.app(environ, start_response)


def main(port: int, bucket: str) -> None:
    app = Counting(DomainDispatcherApplication(create_backend_app), bucket)
    server = make_server("127.0.0.1", port, app, threaded=True,
                         request_handler=MotoRequestHandler)
    print(f"counting requests on {bucket} at http://127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
