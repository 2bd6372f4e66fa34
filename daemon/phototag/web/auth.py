"""Who may use the web app: scrypt password hashes, sessions, CSRF tokens, login rate limits.

The password file holds one `user:hash` line per account, never a password: the hash is
`hashlib.scrypt` (memory-hard, so a stolen file is slow to brute-force) with a random salt.
Sessions live in memory: restarting the app logs everyone out, which costs one login.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from phototag import paths
from phototag.files.fileio import atomic_write

# scrypt cost: 16 MiB and ~50 ms per check; OWASP's minimum is N=2**17 with r=8 at p=1 for
# high-value secrets, N=2**14 keeps a login on a small NAS well under a second.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
TOKEN_BYTES = 32


class AuthError(Exception):
    """The password file is unreadable or a name or password is unusable; one line."""


def password_file() -> Path:
    return paths.config_dir() / "web-passwords"


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash`, salt and hash in hex."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        actual = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:  # malformed line, or scrypt parameters out of range
        return False
    return hmac.compare_digest(actual, bytes.fromhex(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=32)


def load_users(path: Path | None = None) -> dict[str, str]:
    """User name -> stored hash; empty when no password was ever set."""
    path = path or password_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(f"{path}: cannot read: {exc}") from None
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def set_password(user: str, password: str, path: Path | None = None) -> Path:
    """Store the hash of `password` for `user` (others kept), readable by the owner alone."""
    if not user or ":" in user or not user.isprintable():
        raise AuthError(f"{user!r}: a user name is printable and has no ':'")
    if len(password) < 8:
        raise AuthError("a password has at least 8 characters")
    path = path or password_file()
    users = load_users(path) | {user: hash_password(password)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "".join(f"{u}:{h}\n" for u, h in users.items()).encode(), mode=0o600)
    return path


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str  # sent back with every state change: a cross-site form cannot know it
    expires: float  # time.time()


class Sessions:
    """Random session tokens -> sessions, in memory; thread-safe."""

    def __init__(self, hours: float) -> None:
        self.lifetime = hours * 3600
        self._by_token: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, user: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        session = Session(user, secrets.token_urlsafe(TOKEN_BYTES), time.time() + self.lifetime)
        with self._lock:
            self._by_token[token] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._by_token.get(token)
            if session is not None and session.expires < time.time():
                del self._by_token[token]
                return None
        return session

    def end(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)


class RateLimit:
    """At most `attempts` failures per key (a client address) in a sliding `window_s`."""

    def __init__(self, attempts: int, window_s: float = 60.0) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._failures.get(key)
            while times and times[0] <= now - self.window_s:
                times.popleft()
            return bool(times) and len(times) >= self.attempts

    def failed(self, key: str, now: float | None = None) -> None:
        with self._lock:
            self._failures.setdefault(key, deque()).append(time.monotonic() if now is None else now)
