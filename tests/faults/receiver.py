"""A webhook receiver for the end-to-end tests, run as its own process so that a test can
kill it mid-delivery: `python receiver.py PORT FILE [--hang] [--tls CERT KEY]`.

Each delivery's headers and body are appended to FILE (one JSON object a line, flushed before
anything is answered). With `--hang` a delivery is never answered (the test kills the process
meanwhile); without, it is answered 204. With `--tls` it speaks HTTPS with that certificate
chain and key (PEM).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main(port: int, path: str, hang: bool, tls: tuple[str, str] | None) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"pid": os.getpid(), "path": self.path,
                                    "headers": dict(self.headers.items()), "body": body}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            if hang:
                time.sleep(3600)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            return  # the file is the log

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    args = sys.argv[3:]
    at = args.index("--tls") + 1 if "--tls" in args else 0
    main(int(sys.argv[1]), sys.argv[2], "--hang" in args, (args[at], args[at + 1]) if at else None)
