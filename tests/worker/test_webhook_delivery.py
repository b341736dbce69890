"""A webhook delivery's connection (`worker.jobs.webhooks.post`) against real local servers: it
goes to the address the SSRF rules checked, and over HTTPS the certificate is verified
against the URL's host name with the CAs of `SALIENCY_WEBHOOK_CA_FILE` (the system's when
unset). The certificates come from a CA the test makes (`faults.tls`)."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator

import pytest
from faults.tls import Tls, make_tls

from shared.settings import Settings
from worker.jobs.webhooks import post

HEADERS = {"content-type": "application/json", "webhook-id": "msg_test"}


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 204 and keeps each request's path, `Host` header and body."""

    seen: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Recorder.seen.append((self.path, self.headers["Host"], body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        return


def _serve(tls: Tls | None) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"), "localhost")


@pytest.fixture(scope="module")
def https_port(tls) -> Iterator[int]:
    yield from _serve(tls)


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    yield from _serve(None)


def _settings(entries: str, ca: str | None = None) -> Settings:
    env = {"SALIENCY_WEBHOOK_ALLOWED_HOSTS": entries}
    return Settings.from_env({**env, **({"SALIENCY_WEBHOOK_CA_FILE": ca} if ca else {})})


def test_https_verifies_the_certificate_against_the_host_name(tls, https_port):
    """The certificate names `localhost` and no address: checked against the address the
    connection went to, it would be refused."""
    Recorder.seen.clear()
    settings = _settings(f"localhost:{https_port}", str(tls.ca))
    status = post(f"https://localhost:{https_port}/hooks/a?x=1", '{"a":1}', HEADERS, settings)
    assert status == 204
    assert Recorder.seen == [("/hooks/a?x=1", f"localhost:{https_port}", b'{"a":1}')]


def test_https_refuses_a_certificate_for_another_name(tls, https_port):
    """Reached by its address, the same server's certificate does not name what the URL
    names."""
    settings = _settings(f"127.0.0.1:{https_port}", str(tls.ca))
    with pytest.raises(ssl.SSLCertVerificationError, match="127.0.0.1"):
        post(f"https://127.0.0.1:{https_port}/hooks/a", "{}", HEADERS, settings)


def test_https_trusts_the_system_cas_when_no_ca_file_is_set(https_port):
    settings = _settings(f"localhost:{https_port}")
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed|unable to get local"):
        post(f"https://localhost:{https_port}/hooks/a", "{}", HEADERS, settings)


def test_http_posts_to_the_checked_address_with_the_urls_host(http_port):
    Recorder.seen.clear()
    status = post(f"http://localhost:{http_port}/h", "{}", HEADERS,
                  _settings(f"localhost:{http_port}"))
    assert status == 204
    assert Recorder.seen == [("/h", f"localhost:{http_port}", b"{}")]
