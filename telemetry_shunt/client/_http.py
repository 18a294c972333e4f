"""A minimal HTTP/1.1 client with a *total* deadline per request and keep-alive.

``http.client`` applies its timeout to each socket operation, so a server that trickles one byte
every few milliseconds can hold a request for ever. Here every connect, send and receive gets only
what is left of one deadline, so a request never outlives it.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit

_MAX_HEAD_BYTES = 64 * 1024
# Error bodies are read for the message only; a larger body is cut here.
_MAX_BODY_BYTES = 64 * 1024
# Close a kept-alive connection idle longer than this rather than race the server's idle timeout
# (VPC Lattice: at least 60 s).
_MAX_IDLE_SECONDS = 30.0


class RequestTimeout(Exception):
    """The request's deadline passed before a complete response arrived."""


class ProtocolError(Exception):
    """The server's response is not HTTP/1.x we can read."""


class Response(NamedTuple):
    status: int
    # Header names lower-cased; a repeated header keeps its last value.
    headers: dict[str, str]
    body: bytes


class Endpoint(NamedTuple):
    scheme: str
    host: str
    port: int
    # The Host header: the port only when it is not the scheme's default (what SigV4 signs).
    host_header: str


def parse_endpoint(url: str) -> Endpoint:
    """Split ``http(s)://host[:port]`` into its parts; raise ``ValueError`` naming a bad URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint must look like https://host[:port], got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"endpoint must not carry a path or query (the client adds /metrics), got {url!r}")
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port or default_port
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default_port else f"{shown}:{port}"
    return Endpoint(parts.scheme, host, port, host_header)


class Connection:
    """One kept-alive connection to an endpoint, re-opened when needed. Not thread-safe."""

    def __init__(self, endpoint: Endpoint, *, ssl_context: ssl.SSLContext | None = None,
                 while_waiting: Callable[[], None] | None = None, wait_slice: float = 0.01) -> None:
        self.endpoint = endpoint
        # Called every ``wait_slice`` seconds while the response has not begun (the client folds its
        # aggregates meanwhile, so a slow answer does not let its buffer fill); the deadline is unchanged.
        self._while_waiting = while_waiting
        self._wait_slice = wait_slice
        self._ssl_context = ssl_context
        if endpoint.scheme == "https" and ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        self._sock: socket.socket | None = None
        self._last_used = 0.0
        self.connections_opened = 0
        # Whether the last request's body was handed to the kernel in full: after that, a timeout or a
        # broken connection cannot tell whether the server acted on it (the delivery guarantee decides).
        self.body_sent = False

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def forget(self) -> None:
        """Drop the socket without touching it (after ``fork``: the parent still uses it)."""
        self._sock = None

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes, deadline: float
    ) -> Response:
        """Send one request and read the response, all before ``deadline`` (``time.monotonic``)."""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.endpoint.host_header}"]
        head += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "host"]
        head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body

        self.body_sent = False
        reused = self._sock is not None and time.monotonic() - self._last_used < _MAX_IDLE_SECONDS
        if not reused:
            self.close()
        try:
            try:
                return self._exchange(data, deadline)
            except (ConnectionResetError, BrokenPipeError, _StaleConnection):
                if not reused:
                    raise
                # A kept-alive connection the server closed while idle (it had closed before reading the
                # request: not a byte of a response came back): one retry on a fresh one.
                self.close()
                self.body_sent = False
                return self._exchange(data, deadline)
        except _StaleConnection:
            self.close()
            raise ConnectionResetError("connection closed by the server before a response") from None
        except BaseException:
            self.close()
            raise

    def _exchange(self, data: bytes, deadline: float) -> Response:
        if self._sock is None:
            self._sock = self._connect(deadline)
        sock = self._sock
        sock.settimeout(_remaining(deadline))
        try:
            sock.sendall(data)
        except TimeoutError:
            raise RequestTimeout("send timed out") from None
        self.body_sent = True
        response, keep_alive = self._read_response(sock, deadline)
        if keep_alive:
            self._last_used = time.monotonic()
        else:
            self.close()
        return response

    def _connect(self, deadline: float) -> socket.socket:
        endpoint = self.endpoint
        try:
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout=_remaining(deadline))
        except TimeoutError:
            raise RequestTimeout("connect timed out") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                sock.settimeout(_remaining(deadline))
                sock = self._ssl_context.wrap_socket(sock, server_hostname=endpoint.host)
        except BaseException:
            sock.close()
            raise
        self.connections_opened += 1
        return sock

    def _read_response(self, sock: socket.socket, deadline: float) -> tuple[Response, bool]:
        buf = bytearray()
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(buf) > _MAX_HEAD_BYTES:
                raise ProtocolError("response head too large")
            chunk = _recv(sock, deadline) if buf else self._first_recv(sock, deadline)
            if not chunk:
                if not buf:
                    raise _StaleConnection()
                raise ProtocolError("connection closed inside the response head")
            buf += chunk
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        rest = bytes(buf[end + 4 :])
        status_line = head[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
            raise ProtocolError(f"bad status line {head[0][:80]!r}")
        status = int(status_line[1])
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        keep_alive = status_line[0] == "HTTP/1.1" and headers.get("connection", "").lower() != "close"

        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = _read_chunked(sock, rest, deadline)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise ProtocolError("bad Content-Length") from None
            body = _read_exact(sock, rest, length, deadline)
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            body = _read_to_close(sock, rest, deadline)
            keep_alive = False
        return Response(status, headers, body[:_MAX_BODY_BYTES]), keep_alive


    def _first_recv(self, sock: socket.socket, deadline: float) -> bytes:
        """The response's first bytes, calling ``while_waiting`` every ``wait_slice`` until they come."""
        hook, slice_ = self._while_waiting, self._wait_slice
        while hook is not None and deadline - time.monotonic() > slice_:
            sock.settimeout(slice_)
            try:
                return sock.recv(65536)
            except TimeoutError:
                hook()
        return _recv(sock, deadline)


class _StaleConnection(Exception):
    """The server closed the connection before sending a byte of the response."""


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise RequestTimeout("deadline passed")
    return left


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(_remaining(deadline))
    try:
        return sock.recv(65536)
    except TimeoutError:
        raise RequestTimeout("no response before the deadline") from None


def _read_exact(sock: socket.socket, buf: bytes, length: int, deadline: float) -> bytes:
    data = bytearray(buf)
    while len(data) < length:
        chunk = _recv(sock, deadline)
        if not chunk:
            raise ProtocolError("connection closed inside the response body")
        data += chunk
    return bytes(data[:length])


def _read_to_close(sock: socket.socket, buf: bytes, deadline: float) -> bytes:
    data = bytearray(buf)
    while len(data) <= _MAX_BODY_BYTES:
        chunk = _recv(sock, deadline)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _read_chunked(sock: socket.socket, buf: bytes, deadline: float) -> bytes:
    data = bytearray(buf)
    body = bytearray()

    def line() -> bytes:
        while True:
            i = data.find(b"\r\n")
            if i >= 0:
                out = bytes(data[:i])
                del data[: i + 2]
                return out
            chunk = _recv(sock, deadline)
            if not chunk:
                raise ProtocolError("connection closed inside a chunked body")
            data.extend(chunk)

    while True:
        size_text = line().split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError("bad chunk size") from None
        if size == 0:
            while line():  # trailers, up to the empty line
                pass
            return bytes(body)
        while len(data) < size + 2:
            chunk = _recv(sock, deadline)
            if not chunk:
                raise ProtocolError("connection closed inside a chunk")
            data.extend(chunk)
        if len(body) < _MAX_BODY_BYTES:
            body += data[:size]
        del data[: size + 2]
