"""Fetching one image by URL (`phototag tag URL`), treating the URL as untrusted.

- Only http and https. Environment proxies are not used: a proxy would connect on our
  behalf to addresses we never checked.
- The host is resolved once per hop; unless `allow_private`, every address it resolves to
  must be public (`is_public_address`), and the socket connects to exactly those checked
  addresses, so DNS rebinding between check and connect is impossible. TLS still verifies
  the certificate against the host name.
- At most `MAX_REDIRECTS` redirects, each hop checked like the first.
- Accepted Content-Types: `image/*` and `application/octet-stream` (also a missing header,
  which RFC 9110 lets a client treat as octet-stream), because object stores often serve
  photos that way; the decoder sniffs the bytes and refuses non-images. Anything else, e.g.
  `text/html` from a web page, is refused here.
- `max_bytes` is checked against Content-Length up front and enforced while reading.
- `timeout_s` bounds the whole fetch, redirects included: a watchdog shuts the socket at
  the deadline, so a server trickling bytes cannot run on (per-read socket time-outs alone
  would let it). Connect and TLS handshake are bounded by the socket time-out; name
  resolution by the system resolver's own time-outs.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from urllib.parse import quote, urljoin, urlsplit

from phototag import __version__

MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 1 << 16
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv6 addresses that NAT64 maps to IPv4
_AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple]


class FetchError(Exception):
    """A URL was refused or could not be fetched; the message is one line."""


def is_public_address(ip: str) -> bool:
    """True for an address on the public internet, the only kind fetched by default.

    Loopback, private, shared (CGNAT), link-local, multicast, reserved, documentation and
    unspecified addresses are not public. IPv6 forms that embed an IPv4 address
    (IPv4-mapped, 6to4, NAT64) are judged by the IPv4 address they reach. Anything that
    is not an IP address literal (a host name) is not public either.
    """
    try:
        addr = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address):
        if addr in _NAT64:
            return is_public_address(str(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)))
        embedded = addr.ipv4_mapped or addr.sixtofour
        if embedded is not None:
            return is_public_address(str(embedded))
    return addr.is_global and not (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


def fetch(url: str, max_bytes: int, timeout_s: float, allow_private: bool = False) -> bytes:
    """The body of an image URL, within the limits above; FetchError otherwise."""
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        try:
            location = _get(url, max_bytes, deadline, allow_private)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if time.monotonic() >= deadline:
                raise FetchError(f"{url}: no complete answer within {timeout_s:g} s") from exc
            raise FetchError(f"{url}: {_reason(exc)}") from exc
        if isinstance(location, bytes):
            return location
        url = location
    raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects")


def _get(url: str, max_bytes: int, deadline: float, allow_private: bool) -> bytes | str:
    """One hop: the body, or the absolute URL it redirects to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"{url}: only http and https URLs can be fetched")
    if not parts.hostname:
        raise FetchError(f"{url}: no host in URL")
    host = parts.hostname.encode("idna").decode("ascii")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(url, host, port, allow_private)
    sock = _connect(addresses, max(deadline - time.monotonic(), 0.001))
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        sock = context.wrap_socket(sock, server_hostname=host)
        conn = http.client.HTTPSConnection(host, port, context=context)
    else:
        conn = http.client.HTTPConnection(host, port)
    conn.sock = sock  # already connected to a checked address: no second lookup
    fired = threading.Event()
    watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), _shut, (sock, fired))
    watchdog.daemon = True
    watchdog.start()
    try:
        target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~") + (
            f"?{parts.query}" if parts.query else ""
        )
        conn.request(
            "GET", target, headers={"User-Agent": f"phototag/{__version__}", "Accept": "image/*"}
        )
        response = conn.getresponse()
        if response.status in _REDIRECTS:
            location = response.getheader("Location")
            if not location:
                raise FetchError(f"{url}: HTTP {response.status} redirect without a Location")
            return urljoin(url, location)
        if response.status != 200:
            raise FetchError(f"{url}: HTTP {response.status} {response.reason}")
        media = (response.getheader("Content-Type") or "application/octet-stream").split(";")[0]
        media = media.strip().lower()
        if not (media.startswith("image/") or media == "application/octet-stream"):
            raise FetchError(f"{url}: not an image (Content-Type {media})")
        body = _read(response, url, max_bytes)
        if fired.is_set():  # a body without Content-Length ends at the shutdown: cut short
            raise TimeoutError
        return body
    finally:
        watchdog.cancel()
        conn.close()
        sock.close()


def _resolve(url: str, host: str, port: int, allow_private: bool) -> list[_AddrInfo]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"{url}: cannot resolve {host}: {exc.strerror}") from exc
    if not allow_private:
        for info in infos:
            if not is_public_address(info[4][0]):
                raise FetchError(
                    f"{url}: refused, {host} is a private or local address ({info[4][0]}); "
                    "set fetch.allow_private to allow it"
                )
    return infos


def _connect(addresses: list[_AddrInfo], timeout_s: float) -> socket.socket:
    """A socket connected to the first checked address that answers."""
    error: OSError = OSError("no address")
    for family, kind, proto, _, sockaddr in addresses:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout_s)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
        else:
            return sock
    raise error


def _read(response: http.client.HTTPResponse, url: str, max_bytes: int) -> bytes:
    length = response.getheader("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise FetchError(f"{url}: {int(length)} bytes, more than the limit of {max_bytes}")
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise FetchError(f"{url}: more than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    if length.isdigit() and total < int(length):
        raise ConnectionError(f"connection closed after {total} of {length} bytes")
    return b"".join(chunks)


def _shut(sock: socket.socket, fired: threading.Event) -> None:
    """Wake a blocked read at the deadline (shutdown does, from another thread; close may not)."""
    fired.set()
    with contextlib.suppress(OSError):  # already closed: the fetch ended as the deadline passed
        sock.shutdown(socket.SHUT_RDWR)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate refused: {exc.verify_message}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0]
