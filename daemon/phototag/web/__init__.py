"""The local web app: browse, search and review the library in a browser (`phototag web`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phototag.config import Config
    from phototag.library.index import Index

log = logging.getLogger("phototag")


def beside_service(cfg: Config, index: Index) -> Callable[[], None]:
    """Serve the app from the service's own index when web.enabled; returns how to stop it.

    Off, with a line saying why, when no password is set or the `web` extra is missing:
    the service itself runs on either way.
    """
    if not cfg.web.enabled:
        return lambda: None
    try:
        from phototag.web import auth, server
    except ImportError as exc:
        log.warning("web app off: %s (pip install 'phototag[web]')", exc)
        return lambda: None
    if not auth.load_users():
        log.warning("web app off: no password set (phototag web passwd)")
        return lambda: None
    return server.serve_in_thread(cfg, index)
