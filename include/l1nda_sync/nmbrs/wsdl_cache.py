"""WSDLs cached on disk with a TTL, so a worker parses a local copy instead of fetching it on every run.

One file per URL (`<sha256 of the URL>.wsdl`), written atomically (temp file + rename), fresh while younger than
the TTL. Only a document whose root is `wsdl:definitions` is stored, so an error page never poisons the cache.
When a refresh fails and a stale copy exists, the stale copy is used (and a warning logged): a WSDL changes
far less often than Nmbrs has a hiccup.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lxml import etree

from l1nda_sync.nmbrs.errors import NmbrsError, TransientError

log = logging.getLogger(__name__)

WSDL_ROOT = "{http://schemas.xmlsoap.org/wsdl/}definitions"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "l1nda-sync" / "wsdl"


def is_wsdl(content: bytes) -> bool:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True)
    try:
        root = etree.fromstring(content, parser=parser)
    except etree.XMLSyntaxError:
        return False
    return root.tag == WSDL_ROOT


class WsdlCache:
    """WSDLs on disk, one file per URL, used while younger than `ttl` seconds."""

    def __init__(self, directory: str | Path | None, ttl: float, *, wall_clock: Callable[[], float] = time.time
                 ) -> None:
        self.directory = Path(directory) if directory else default_cache_dir()
        self.ttl = ttl
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self.hits = 0
        self.fetches = 0
        self.stale_uses = 0

    def path_for(self, url: str) -> Path:
        return self.directory / f"{hashlib.sha256(url.encode('utf-8')).hexdigest()[:32]}.wsdl"

    def get(self, url: str, fetch: Callable[[], bytes]) -> bytes:
        """The WSDL at `url`: the cached copy while fresh, else `fetch()` (stored when it is a WSDL)."""
        path = self.path_for(url)
        cached = self._read(path)
        if cached is not None and self._age(path) < self.ttl:
            with self._lock:
                self.hits += 1
            return cached
        try:
            content = fetch()
            if not is_wsdl(content):
                raise TransientError(f"{_short(url)} did not answer with a WSDL document", operation="WSDL")
        except NmbrsError as exc:
            if cached is None:
                raise
            log.warning("could not refresh the WSDL %s (%s); using the cached copy", _short(url), exc)
            with self._lock:
                self.stale_uses += 1
            return cached
        with self._lock:
            self.fetches += 1
        self._write(path, content)
        return content

    def _age(self, path: Path) -> float:
        try:
            return self._wall_clock() - path.stat().st_mtime
        except OSError:
            return float("inf")

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            content = path.read_bytes()
        except OSError:
            return None
        return content if is_wsdl(content) else None

    def _write(self, path: Path, content: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".wsdl-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(content)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:  # a read-only home must not stop the sync: work without the disk copy
            log.warning("cannot cache the WSDL in %s (%s); it will be fetched again next run", path.parent, exc)


def _short(url: str) -> str:
    return url.split("?", 1)[0]
