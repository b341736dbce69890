"""A small TCP proxy on loopback whose forwarding can be paused: the fault suite puts it in
front of the S3 server to make storage unreachable for a while.

`pause()` is a black hole, the harder case for a client than a refused connection: the
connections already open are cut, and new ones are accepted but never answered, so every
call waits for its own timeout. `resume()` forwards again (connections accepted while paused
are closed, and clients reconnect). `latency_s` delays every piece of data forwarded, in
both directions: storage that answers, slowly.
"""

from __future__ import annotations

import socket
import threading
import time

from devstack import free_port

BUFFER = 65536


class TcpProxy:
    """Forwards `127.0.0.1:port` to `target` (host, port) until closed."""

    def __init__(self, target: tuple[str, int], port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self.latency_s = 0.0
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # every socket of every forwarded connection
        self._held: list[socket.socket] = []  # connections accepted while paused
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=128)
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def paused(self) -> bool:
        return not self._flowing.is_set()

    def pause(self) -> None:
        """Stop forwarding: cut every open connection and hold new ones unanswered."""
        self._flowing.clear()
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _close(sock)

    def resume(self) -> None:
        """Forward again; the connections held while paused are closed."""
        with self._lock:
            held, self._held = self._held, []
        for sock in held:
            _close(sock)
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        self.pause()
        self.resume()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._flowing.is_set():
                with self._lock:
                    self._held.append(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), name="proxy-pipe",
                                 daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(BUFFER)
                if self.latency_s:
                    time.sleep(self.latency_s)
                if not data or not self._flowing.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass  # the other side closed, or `pause` cut the connection: either ends the pipe
        finally:
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected (a listener, or already closed): closing is enough
    sock.close()
