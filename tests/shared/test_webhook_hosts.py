"""The SSRF rules of webhook URLs (`shared.webhooks.resolve_allowed`): an allow-list entry
`host` opens the scheme's default port of that host alone, `host:port` that one port; the
entries are checked when the settings are read."""

from __future__ import annotations

import pytest

from shared.errors import SpecError
from shared.settings import Settings, SettingsError
from shared.webhooks import resolve_allowed


def _allowed(value: str) -> tuple[str, ...]:
    return Settings.from_env({"SALIENCY_WEBHOOK_ALLOWED_HOSTS": value}).webhook_allowed_hosts


@pytest.mark.parametrize(("entries", "url", "host", "port"), [
    ("localhost", "http://localhost/hook", "localhost", 80),
    ("localhost", "http://localhost:80/hook", "localhost", 80),
    ("localhost", "https://localhost/hook", "localhost", 443),
    ("LocalHost", "https://LOCALHOST/hook", "localhost", 443),
    ("localhost:8080", "http://localhost:8080/hook", "localhost", 8080),
    ("hooks.internal,127.0.0.1:8443", "https://127.0.0.1:8443/hook", "127.0.0.1", 8443),
    ("[::1]:8443", "https://[::1]:8443/hook", "::1", 8443),
])
def test_an_allowed_host_and_port_may_be_reached(entries, url, host, port):
    got_host, got_port, addresses = resolve_allowed(url, _allowed(entries))
    assert (got_host, got_port) == (host, port)
    assert addresses and set(addresses) <= {"127.0.0.1", "::1"}


@pytest.mark.parametrize(("entries", "url"), [
    ("localhost", "http://localhost:6379/"),  # the stack's own Redis
    ("localhost", "http://localhost:443/hook"),  # https's default port, not http's
    ("localhost", "https://localhost:80/hook"),
    ("localhost", "http://localhost:8080/hook"),
    ("localhost:8080", "http://localhost/hook"),
    ("localhost:8080", "http://localhost:8081/hook"),
    ("localhost:8080", "http://127.0.0.1:8080/hook"),  # entries name hosts as URLs write them
    ("127.0.0.1:8443", "https://localhost:8443/hook"),
    ("[::1]:8443", "https://[::1]:8444/hook"),
])
def test_another_port_of_an_allowed_host_is_refused(entries, url):
    with pytest.raises(SpecError, match=r"notify\.url: host .* \(port \d+\) is a private"):
        resolve_allowed(url, _allowed(entries))


@pytest.mark.parametrize("url", ["http://localhost:0/", "http://localhost:65536/",
                                 "http://localhost:x/", "http://localhost:+80/"])
def test_a_port_that_is_no_port_is_refused(url):
    with pytest.raises(SpecError, match="port that is not a number from 1 to 65535"):
        resolve_allowed(url, _allowed("localhost"))


@pytest.mark.parametrize("entry", ["a:0", "a:65536", "a:", "a:b", "::1", "[::1", "u@a:80",
                                   "http://a", "a/b", "a:+80"])
def test_a_malformed_entry_fails_when_the_settings_are_read(entry):
    with pytest.raises(SettingsError, match="must be host or host:port"):
        _allowed(entry)
