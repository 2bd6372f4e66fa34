"""URL fetching: address checks on IP strings, and fetches from a local server."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from localserver import QuietHandler, serve

from phototag.pipeline import fetch as fetch_module
from phototag.pipeline.fetch import FetchError, fetch, is_public_address

PHOTO = bytes(range(256)) * 40  # 10240 bytes; fetch never decodes, so any bytes will do


class Handler(QuietHandler):
    def do_GET(self) -> None:
        with contextlib.suppress(OSError):  # the client gave up (time-out tests)
            self.route()

    def reply(self, body: bytes, kind: str | None = "image/jpeg", length: bool = True) -> None:
        self.send_response(200)
        if kind:
            self.send_header("Content-Type", kind)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route(self) -> None:
        path = self.path
        if path == "/photo.jpg":
            self.reply(PHOTO)
        elif path == "/host":
            self.reply(self.headers["Host"].encode())
        elif path == "/page":
            self.reply(b"<html></html>", "text/html; charset=utf-8")
        elif path == "/octet":
            self.reply(PHOTO, "application/octet-stream")
        elif path == "/no-type":
            self.reply(PHOTO, None)
        elif path == "/no-length":  # HTTP/1.0: the body ends when the connection closes
            self.reply(PHOTO, length=False)
        elif path.startswith("/redirect/"):
            hops = int(path.rsplit("/", 1)[1])
            self.redirect(f"/redirect/{hops - 1}" if hops > 1 else "/photo.jpg")
        elif path == "/to-metadata":
            self.redirect("http://169.254.169.254/latest/meta-data/")
        elif path == "/to-private":
            self.redirect("http://10.0.0.1/photo.jpg")
        elif path == "/to-file":
            self.redirect("file:///etc/passwd")
        elif path == "/slow":
            time.sleep(3)
            self.reply(PHOTO)
        elif path == "/trickle":  # every byte well within any per-read time-out
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        elif path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve(Handler) as url:
        yield url


def get(url: str, max_bytes: int = 1_000_000, timeout_s: float = 5.0) -> bytes:
    return fetch(url, max_bytes, timeout_s, allow_private=True)


def fake_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> list[str]:
    """Resolve the test names in `names` to local addresses; returns the hosts looked up."""
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def lookup(host: str, *args: object, **kwargs: object) -> list:
        looked_up.append(host)
        return real(names.get(host, host), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    return looked_up


# --- address checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    [
        "localhost",  # a name, not an address
        "127.0.0.1",
        "127.1.2.3",
        "[::1]",
        "::1",
        "169.254.169.254",  # cloud metadata
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",  # shared address space (CGNAT)
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "fd12:3456::1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",  # documentation
        "2001:db8::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "not-an-ip",
        "",
    ],
)
def test_non_public_addresses(ip: str) -> None:
    assert not is_public_address(ip)


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    ],
)
def test_public_addresses(ip: str) -> None:
    assert is_public_address(ip)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:1/photo.jpg",
        "http://127.0.0.1:1/photo.jpg",
        "http://[::1]:1/photo.jpg",
        "http://[::ffff:127.0.0.1]:1/photo.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/photo.jpg",
        "https://192.168.1.1/photo.jpg",
        "http://0x7f000001:1/photo.jpg",  # 127.0.0.1 spelt in hex
    ],
)
def test_private_hosts_refused_before_connecting(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    def no_connect(*args: object) -> None:
        raise AssertionError("connected to a refused address")

    monkeypatch.setattr(fetch_module, "_connect", no_connect)
    with pytest.raises(FetchError, match=r"refused, .* is a private or local address") as info:
        fetch(url, 1000, 1.0)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.org/a.jpg", "gopher://example.org/", "data:,x"]
)
def test_other_schemes_refused(url: str) -> None:
    with pytest.raises(FetchError, match="only http and https URLs can be fetched"):
        fetch(url, 1000, 1.0, allow_private=True)


# --- fetching from a local server ----------------------------------------------------------


def test_fetches_images(base: str) -> None:
    assert get(f"{base}/photo.jpg") == PHOTO
    assert get(f"{base}/octet") == PHOTO
    assert get(f"{base}/no-type") == PHOTO
    assert get(f"{base}/no-length") == PHOTO


def test_refuses_non_images(base: str) -> None:
    with pytest.raises(FetchError, match=r"/page: not an image \(Content-Type text/html\)$"):
        get(f"{base}/page")


def test_size_limit(base: str) -> None:
    with pytest.raises(FetchError, match=f"10240 bytes, more than the limit of {len(PHOTO) - 1}$"):
        get(f"{base}/photo.jpg", max_bytes=len(PHOTO) - 1)
    with pytest.raises(FetchError, match=f"more than the limit of {len(PHOTO) - 1} bytes$"):
        get(f"{base}/no-length", max_bytes=len(PHOTO) - 1)
    assert get(f"{base}/no-length", max_bytes=len(PHOTO)) == PHOTO


def test_redirects(base: str) -> None:
    assert get(f"{base}/redirect/5") == PHOTO
    with pytest.raises(FetchError, match="more than 5 redirects"):
        get(f"{base}/redirect/6")
    with pytest.raises(FetchError, match=r"^file:///etc/passwd: only http and https"):
        get(f"{base}/to-file")


def test_connects_to_the_address_it_checked(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    port = base.rsplit(":", 1)[1]
    looked_up = fake_dns(monkeypatch, {"photos.test": "127.0.0.1"})
    assert get(f"http://photos.test:{port}/host") == f"photos.test:{port}".encode()
    assert looked_up == ["photos.test"]  # one lookup: the checked answer is the one used


def test_redirect_to_private_address_refused(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Let the test server pass for a public host, so that only the redirect's hop is private.
    port = base.rsplit(":", 1)[1]
    fake_dns(monkeypatch, {"photos.test": "127.0.0.1"})
    monkeypatch.setattr(fetch_module, "is_public_address", lambda ip: ip == "127.0.0.1")
    assert fetch(f"http://photos.test:{port}/photo.jpg", 100_000, 5.0) == PHOTO
    with pytest.raises(FetchError, match=r"^http://169\.254\.169\.254/latest/meta-data/: refused"):
        fetch(f"http://photos.test:{port}/to-metadata", 100_000, 5.0)
    with pytest.raises(FetchError, match=r"refused, 10\.0\.0\.1 is a private or local address"):
        fetch(f"http://photos.test:{port}/to-private", 100_000, 5.0)


@pytest.mark.parametrize("path", ["/slow", "/trickle"])
def test_overall_time_limit(base: str, path: str) -> None:
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"no complete answer within 0\.4 s$"):
        get(f"{base}{path}", timeout_s=0.4)
    assert time.monotonic() - start < 1.5


def test_broken_answers(base: str) -> None:
    with pytest.raises(FetchError, match=r"connection closed after 10 of 1000 bytes$"):
        get(f"{base}/truncated")
    with pytest.raises(FetchError, match=r"HTTP 404 Not Found$"):
        get(f"{base}/missing.jpg")
    with pytest.raises(FetchError, match=r"Connection refused$"):
        get("http://127.0.0.1:1/photo.jpg")


# --- https ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An https server whose self-signed certificate names photos.test; yields (URL, cert)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=photos.test",
         "-addext", "subjectAltName=DNS:photos.test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with serve(Handler, tls=context) as url:
        yield url, cert


def test_https_verifies_the_host_name_on_the_pinned_address(
    tls_base: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, cert = tls_base
    port = url.rsplit(":", 1)[1]
    fake_dns(monkeypatch, {"photos.test": "127.0.0.1"})
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test certificate
    assert get(f"https://photos.test:{port}/photo.jpg") == PHOTO
    assert get(f"https://photos.test:{port}/host") == f"photos.test:{port}".encode()
    with pytest.raises(FetchError, match="TLS certificate refused: IP address mismatch"):
        get(f"{url}/photo.jpg")  # the certificate names photos.test, not 127.0.0.1


def test_https_refuses_an_untrusted_certificate(
    tls_base: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = tls_base
    port = url.rsplit(":", 1)[1]
    fake_dns(monkeypatch, {"photos.test": "127.0.0.1"})
    with pytest.raises(FetchError, match=r"TLS certificate refused: self-signed certificate$"):
        get(f"https://photos.test:{port}/photo.jpg")
