"""Serving the app with uvicorn: alone (`phototag web`) or in a thread of `phototag watch`."""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable

import uvicorn

from phototag.config import Config
from phototag.library.index import Index
from phototag.web import auth
from phototag.web.app import create_app

log = logging.getLogger("phototag")


class ListenError(ValueError):
    """web.listen is not host:port."""


def listen_address(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` as (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ListenError(f"web.listen {text!r}: give host:port, e.g. 127.0.0.1:8765")
    return host, int(port)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def server(cfg: Config, index: Index) -> uvicorn.Server:
    """A uvicorn server of the app over `index`, warning when others could reach it in clear."""
    from phototag.pipeline import tagger

    host, port = listen_address(cfg.web.listen)
    if not is_loopback(host) and not cfg.web.tls:
        log.warning(
            "the web app listens on %s without TLS: passwords and photos cross the network in "
            "clear; put an HTTPS proxy in front and set web.tls: true",
            cfg.web.listen,
        )
    if not auth.load_users():
        log.warning("no web password set: nobody can log in (set one: phototag web passwd)")
    app = create_app(cfg, index, lambda: tagger.load(cfg))
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=cfg.web.tls
    )
    return uvicorn.Server(config)


def serve_in_thread(cfg: Config, index: Index) -> Callable[[], None]:
    """Start serving beside the service; returns the function that stops it."""
    srv = server(cfg, index)
    thread = threading.Thread(target=srv.run, name="phototag-web", daemon=True)
    thread.start()
    log.info("web app on http://%s", cfg.web.listen)

    def stop() -> None:
        srv.should_exit = True
        thread.join(timeout=10)

    return stop
