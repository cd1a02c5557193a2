"""What keeps the app and the API closed unless opened on purpose: allowed folders, loopback, keys, sizes.

- **Allowed roots.** A folder on the server may be ingested only when it lies under one of the allowed roots:
  the uploads directory, plus each `--allow-dir` (app: also `$NVEMBED_ALLOW_DIRS`, `os.pathsep`-separated).
  Paths are compared after resolving symbolic links and `..`, so `ROOT/../etc` or a link out of a root is
  refused. `check_folder` is the one check, called at the entry of every folder ingest (app and API).
- **Loopback.** Servers bind to 127.0.0.1 unless told otherwise; `require_auth_for_bind` refuses a
  non-loopback address when no authentication is configured.
- **API keys.** `ApiKeys` holds the keys the API accepts, each with `read` or `write` permission, from
  `--api-key KEY[:write]`, `--api-key-file FILE` (one `KEY [read|write]` a line) or `$NVEMBED_API_KEYS`
  (comma-separated `KEY[:write]`). Keys are compared in constant time.
- **App password.** `$NVEMBED_APP_PASSWORD` (or `-- --password-env NAME`) gates the Streamlit app.
- **Upload names and sizes.** Names are reduced to a safe base name by `app.jobs.safe_name`; `check_upload`
  adds the size limit (`DEFAULT_MAX_UPLOAD_MB`, the same as `.streamlit/config.toml`'s `maxUploadSize`).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ALLOW_DIRS_ENV = "NVEMBED_ALLOW_DIRS"
API_KEYS_ENV = "NVEMBED_API_KEYS"
APP_PASSWORD_ENV = "NVEMBED_APP_PASSWORD"
DEFAULT_MAX_UPLOAD_MB = 50
PERMISSIONS = ("read", "write")


class SecurityError(ValueError):
    """A request or a configuration that security rules refuse; the message says which rule and how to allow it."""


class PathNotAllowedError(SecurityError):
    """A folder outside the allowed roots."""


class UnsafeBindError(SecurityError):
    """A non-loopback address without authentication."""


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def allowed_roots(uploads_dir: str | os.PathLike[str] | None, allow_dirs: Iterable[str | os.PathLike[str]] = ()) -> tuple[Path, ...]:
    """The resolved roots folder ingest may read: the uploads directory and every allowed directory."""
    roots = [_real(p) for p in ([uploads_dir] if uploads_dir else []) + list(allow_dirs)]
    return tuple(dict.fromkeys(roots))


def parse_allow_dirs(value: str | None) -> list[str]:
    """`$NVEMBED_ALLOW_DIRS`: directories separated by `os.pathsep` (empty entries ignored)."""
    return [p for p in (value or "").split(os.pathsep) if p.strip()]


def check_folder(folder: str | os.PathLike[str], roots: Sequence[Path]) -> Path:
    """The resolved folder when it lies under one of `roots`; else `PathNotAllowedError` naming the fix."""
    target = _real(folder)
    for root in roots:
        root = _real(root)
        if target == root or root in target.parents:
            return target
    shown = ", ".join(str(r) for r in roots) or "none"
    raise PathNotAllowedError(
        f"the folder {os.fspath(folder)} is outside the folders this server may read (allowed: {shown}). "
        f"Start the server with --allow-dir {target} to allow it"
    )


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`; False for 0.0.0.0, :: and every other address or name."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_auth_for_bind(host: str, has_auth: bool, what: str = "--api-key") -> None:
    """Refuse a non-loopback bind when no authentication is configured."""
    if not is_loopback(host) and not has_auth:
        raise UnsafeBindError(
            f"refusing to listen on {host}: that address is reachable from the network and no authentication is "
            f"configured. Configure it ({what}), or listen on 127.0.0.1"
        )


@dataclass
class ApiKeys:
    """API keys and their permission (`read` or `write`; write implies read)."""

    keys: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def add(self, spec: str) -> None:
        """`KEY`, `KEY:read` or `KEY:write` (also `KEY write` as in a key file)."""
        spec = spec.strip()
        key, perm = spec, "read"
        for sep in (":", " ", "\t"):
            head, found, tail = spec.rpartition(sep)
            if found and tail.strip().lower() in PERMISSIONS:
                key, perm = head.strip(), tail.strip().lower()
                break
        if len(key) < 8:
            raise SecurityError(f"API key {key[:2]!r}… is too short: use at least 8 characters")
        self.keys[key] = perm

    @classmethod
    def load(cls, specs: Iterable[str] = (), files: Iterable[str | os.PathLike[str]] = (),
             env: str | None = None) -> ApiKeys:
        keys = cls()
        for spec in specs:
            keys.add(spec)
        for file in files:
            try:
                lines = Path(file).read_text().splitlines()
            except OSError as exc:
                raise SecurityError(f"cannot read the API key file {file}: {exc.strerror}") from None
            for line in lines:
                if line.strip() and not line.lstrip().startswith("#"):
                    keys.add(line)
        for spec in (env or "").split(","):
            if spec.strip():
                keys.add(spec)
        return keys

    def permission(self, presented: str | None) -> str | None:
        """`read`/`write` for a known key, None otherwise (every key is compared, in constant time)."""
        found = None
        for key, perm in self.keys.items():
            if presented is not None and hmac.compare_digest(key.encode(), presented.encode()):
                found = perm
        return found


def password_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def check_upload(name: str, size: int, max_mb: float = DEFAULT_MAX_UPLOAD_MB) -> None:
    """Refuse an upload over the size limit (the name is made safe by `app.jobs.safe_name`)."""
    if size > max_mb * 1e6:
        raise SecurityError(f"{name}: {size / 1e6:.1f} MB is over the upload limit of {max_mb:g} MB")
