"""Where phototag keeps its files, following the XDG base directory spec.

Tests point XDG_* at temporary folders, so nothing here is cached at import time.
"""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    base = Path(value) if value and Path(value).is_absolute() else Path.home() / fallback
    return base / "phototag"


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config")


def data_dir() -> Path:
    """Installed model files live here (large, precious, re-downloadable)."""
    return _xdg("XDG_DATA_HOME", ".local/share")


def state_dir() -> Path:
    """The index, embeddings and the service's queue live here."""
    return _xdg("XDG_STATE_HOME", ".local/state")


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache")
