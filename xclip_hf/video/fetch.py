"""Downloading a video from an http(s) URL within a size limit and an overall deadline, addresses checked (README, "Serving the app")."""

from __future__ import annotations

import http.client
import io
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass

__all__ = ["URLRefused", "FetchHints", "address_refusal", "fetch_video", "fetch_bytes", "PinnedConnection",
           "MAX_REDIRECTS"]

MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
CHUNK_BYTES = 64 * 1024


class URLRefused(ValueError):
    """A URL that is not fetched (its scheme, its address, its size); one line naming it."""


@dataclass(frozen=True)
class FetchHints:
    """How refusals name who fetches and the option that lifts each limit (the app's flags, the pipeline's arguments)."""

    fetcher: str = "xclip_hf"
    limit: str = "the download limit"
    size: str = "download the file and pass its local path"
    time: str = "download the file and pass its local path"
    private: str = "pass allow_private=True to fetch such addresses"


def address_refusal(address) -> str | None:
    """What kind of non-public address ``address`` is ("loopback", "private", ...), or None for a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for kind in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-public"


class _Deadline:
    """An overall time limit: the seconds left, and a watchdog that shuts a connection's socket when it passes."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.end = time.monotonic() + self.seconds

    def left(self) -> float:
        return max(self.end - time.monotonic(), 0.0)

    def passed(self) -> bool:
        return time.monotonic() >= self.end

    def watch(self, connection) -> threading.Timer:
        """A started timer that shuts ``connection``'s socket at the deadline (a blocked read then returns)."""
        timer = threading.Timer(self.left(), _shut, (connection,))
        timer.daemon = True
        timer.start()
        return timer


def _shut(connection) -> None:
    """Shut the connection's socket (the response may hold it after the connection let go of it)."""
    sock = getattr(connection, "live_socket", None)
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's shutdown, also under TLS
        except OSError:
            pass


class PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to an address checked beforehand; ``host`` is only the Host header (and SNI name)."""

    def __init__(self, host: str, port: int, address: tuple, *, tls: bool, timeout: float):
        self.default_port = 443 if tls else 80  # the Host header leaves out the scheme's own port
        super().__init__(host, port, timeout=timeout)
        self.address, self.tls = address, tls

    def connect(self):
        family, sockaddr = self.address
        self.sock = self.live_socket = socket.socket(family, socket.SOCK_STREAM)  # the watchdog's to shut
        self.sock.settimeout(self.timeout)
        self.sock.connect(sockaddr)
        if self.tls:
            self.sock = self.live_socket = ssl.create_default_context().wrap_socket(self.sock,
                                                                                   server_hostname=self.host)


def _lookup(host: str, port: int, deadline: _Deadline) -> list[tuple]:
    """The host's TCP addresses as (family, sockaddr), looked up once, within the deadline."""
    found: dict = {}

    def run():
        try:
            found["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as err:
            found["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(deadline.left())
    if worker.is_alive():
        raise TimeoutError("the host name lookup did not finish")
    if "error" in found:
        raise ConnectionError(f"cannot resolve the host {host!r}")
    return list(dict.fromkeys((family, sockaddr) for family, _, _, _, sockaddr in found["infos"]))


def _checked_addresses(url: str, hop: str, allow_private: bool, deadline: _Deadline, hints: FetchHints):
    """(host, port, tls, addresses) of one hop, every address checked; `URLRefused` before any connection."""
    via = "" if hop == url else f" (redirected to {hop!r})"
    parts = urllib.parse.urlsplit(hop)
    if parts.scheme.lower() not in ("http", "https"):
        raise URLRefused(f"URL {url!r} refused{via}: only http:// and https:// URLs are fetched")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise URLRefused(f"URL {url!r} refused{via}: its port is not a number from 0 to 65535") from None
    if not host:
        raise URLRefused(f"URL {url!r} refused{via}: it names no host")
    tls = parts.scheme.lower() == "https"
    port = port or (443 if tls else 80)
    addresses = _lookup(host, port, deadline)
    if not allow_private:
        for _, sockaddr in addresses:
            kind = address_refusal(sockaddr[0])
            if kind:
                raise URLRefused(f"URL {url!r} refused{via}: its host {host!r} is a {kind} address, and "
                                 f"{hints.fetcher} fetches public internet addresses only ({hints.private})")
    return host, port, tls, addresses


def _open(host: str, port: int, tls: bool, addresses: list, target: str, deadline: _Deadline):
    """GET ``target`` from the first of ``addresses`` that answers: (connection, response, watchdog)."""
    error = None
    for address in addresses:
        connection = PinnedConnection(host, port, address, tls=tls, timeout=max(deadline.left(), 0.001))
        watchdog = deadline.watch(connection)
        try:
            connection.request("GET", target, headers={"User-Agent": "xclip-hf", "Accept-Encoding": "identity"})
            return connection, connection.getresponse(), watchdog
        except (OSError, ValueError, http.client.HTTPException) as err:
            watchdog.cancel()
            connection.close()
            error = err
            if deadline.passed():
                break
    raise error if error is not None else ConnectionError("no address to connect to")


def _copy_body(response, url: str, out, max_bytes: int, deadline: _Deadline, hints: FetchHints) -> None:
    """Write the body to the binary file ``out``, never more than ``max_bytes``."""
    declared = response.getheader("Content-Length", "")
    if declared.strip().isdigit() and int(declared) > max_bytes:
        raise URLRefused(f"URL {url!r} is {_megabytes(int(declared))}, over {hints.limit} of "
                         f"{_megabytes(max_bytes)} ({hints.size})")
    written = 0
    while chunk := response.read1(CHUNK_BYTES):
        written += len(chunk)
        if written > max_bytes:
            raise URLRefused(f"URL {url!r} is over {hints.limit} of {_megabytes(max_bytes)} (the download "
                             f"stopped there; {hints.size})")
        out.write(chunk)
    if deadline.passed():
        raise TimeoutError("the download did not finish")
    if response.length:  # the server closed before the Content-Length it declared
        raise ConnectionError(f"the connection closed after {written} bytes of {declared}")
    if written == 0:
        raise ConnectionError("the server sent no bytes")


def _save(response, url: str, folder: str, suffix: str, max_bytes: int, deadline: _Deadline, hints: FetchHints) -> str:
    """Write the body into a new file in ``folder``, never more than ``max_bytes``; its path."""
    handle, path = tempfile.mkstemp(prefix="url_", suffix=suffix, dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            _copy_body(response, url, out, max_bytes, deadline, hints)
    except BaseException:
        os.unlink(path)
        raise
    return path


def _in_memory(response, url: str, max_bytes: int, deadline: _Deadline, hints: FetchHints) -> bytes:
    """The body as bytes, never more than ``max_bytes``."""
    out = io.BytesIO()
    _copy_body(response, url, out, max_bytes, deadline, hints)
    return out.getvalue()


def _request_target(parts) -> str:
    """The path and query of a URL as sent on the request line (spaces and non-ASCII percent-encoded)."""
    safe = "/%:@!$&'()*+,;=-._~?"
    path = urllib.parse.quote(parts.path or "/", safe=safe)
    return path + (f"?{urllib.parse.quote(parts.query, safe=safe)}" if parts.query else "")


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.3g} MB"


def fetch_video(url: str, folder: str, *, max_bytes: int, timeout: float, allow_private: bool = False,
                hints: FetchHints = FetchHints()) -> str:
    """Download ``url`` into a new file in ``folder`` under the rules of this module; returns its path.

    Raises `URLRefused` (scheme, address, size), TimeoutError (over ``timeout`` seconds overall) or ConnectionError,
    each one line naming ``url``.
    """
    suffix = os.path.splitext(urllib.parse.urlsplit(url).path)[1][:16] or ".mp4"
    return _download(url, lambda response, deadline: _save(response, url, folder, suffix, max_bytes, deadline, hints),
                     timeout, allow_private, hints)


def fetch_bytes(url: str, *, max_bytes: int, timeout: float, allow_private: bool = False,
                hints: FetchHints = FetchHints()) -> bytes:
    """Download ``url`` into memory under the rules of this module (as `fetch_video`, no file written)."""
    return _download(url, lambda response, deadline: _in_memory(response, url, max_bytes, deadline, hints),
                     timeout, allow_private, hints)


def _download(url: str, keep, timeout: float, allow_private: bool, hints: FetchHints):
    """GET ``url`` (redirects followed, each hop checked) and return ``keep(response, deadline)`` for the 200 answer."""
    deadline = _Deadline(timeout)
    hop = url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            host, port, tls, addresses = _checked_addresses(url, hop, allow_private, deadline, hints)
            parts = urllib.parse.urlsplit(hop)
            target = _request_target(parts)
            connection, response, watchdog = _open(host, port, tls, addresses, target, deadline)
            try:
                if response.status in REDIRECT_STATUSES and response.getheader("Location"):
                    hop = urllib.parse.urljoin(hop, response.getheader("Location").strip())
                    continue
                if response.status != 200:
                    raise ConnectionError(f"the server answered HTTP {response.status} {response.reason}".strip())
                return keep(response, deadline)
            finally:
                watchdog.cancel()
                connection.close()
        raise ConnectionError(f"more than {MAX_REDIRECTS} redirects")
    except URLRefused:
        raise
    except (OSError, ValueError, http.client.HTTPException) as err:
        if deadline.passed() or isinstance(err, TimeoutError):
            raise TimeoutError(f"URL {url!r} took longer than {hints.limit} of {deadline.seconds:g} s to download "
                               f"({hints.time})") from err
        raise ConnectionError(f"could not download {url!r}: {_reason(err)}") from err


def _reason(err: BaseException) -> str:
    """A network error in a few words."""
    text = str(getattr(err, "reason", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__
