"""WSDL disk cache: TTL, stale copy on a failed refresh, only real WSDLs stored, atomic files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from l1nda_sync.nmbrs.errors import TransientError
from l1nda_sync.nmbrs.wsdl_cache import WsdlCache, default_cache_dir

WSDL = (b'<?xml version="1.0"?><wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
        b'targetNamespace="urn:x"/>')
WSDL2 = WSDL.replace(b"urn:x", b"urn:y")
URL = "https://api.nmbrs.nl/soap/v3/DebtorService.asmx?WSDL"


class Fetch:
    def __init__(self, *answers: bytes | Exception) -> None:
        self.answers = list(answers)
        self.count = 0

    def __call__(self) -> bytes:
        self.count += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Wall:
    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_fresh_copy_is_used_without_fetching(tmp_path: Path) -> None:
    wall = Wall()
    cache = WsdlCache(tmp_path, 3600, wall_clock=wall)
    fetch = Fetch(WSDL)
    assert cache.get(URL, fetch) == WSDL
    os.utime(cache.path_for(URL), (wall.now, wall.now))
    again = WsdlCache(tmp_path, 3600, wall_clock=wall)  # another worker process, same directory
    assert again.get(URL, Fetch()) == WSDL
    assert (fetch.count, again.hits, again.fetches) == (1, 1, 0)


def test_an_expired_copy_is_fetched_again(tmp_path: Path) -> None:
    wall = Wall()
    cache = WsdlCache(tmp_path, 3600, wall_clock=wall)
    cache.get(URL, Fetch(WSDL))
    os.utime(cache.path_for(URL), (wall.now - 3601, wall.now - 3601))
    fetch = Fetch(WSDL2)
    assert cache.get(URL, fetch) == WSDL2
    assert fetch.count == 1
    assert cache.path_for(URL).read_bytes() == WSDL2


def test_a_failed_refresh_falls_back_to_the_stale_copy(tmp_path: Path, caplog) -> None:
    wall = Wall()
    cache = WsdlCache(tmp_path, 0, wall_clock=wall)  # TTL 0: always refresh
    cache.get(URL, Fetch(WSDL))
    assert cache.get(URL, Fetch(TransientError("connection refused"))) == WSDL
    assert cache.stale_uses == 1
    assert "using the cached copy" in caplog.text


def test_without_any_copy_the_failure_is_raised(tmp_path: Path) -> None:
    with pytest.raises(TransientError, match="refused"):
        WsdlCache(tmp_path, 3600).get(URL, Fetch(TransientError("refused")))


def test_an_error_page_is_never_cached(tmp_path: Path) -> None:
    cache = WsdlCache(tmp_path, 3600)
    with pytest.raises(TransientError, match="did not answer with a WSDL"):
        cache.get(URL, Fetch(b"<html><body>Service Unavailable</body></html>"))
    assert not cache.path_for(URL).exists()
    cache.path_for(URL).write_bytes(b"garbage")  # a damaged file counts as no copy
    assert cache.get(URL, Fetch(WSDL)) == WSDL


def test_urls_get_their_own_files_and_no_temp_files_remain(tmp_path: Path) -> None:
    cache = WsdlCache(tmp_path, 3600)
    cache.get(URL, Fetch(WSDL))
    cache.get(URL.replace("Debtor", "Company"), Fetch(WSDL2))
    assert sorted(p.name.endswith(".wsdl") for p in tmp_path.iterdir()) == [True, True]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_directory_still_answers(tmp_path: Path) -> None:
    tmp_path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        cache = WsdlCache(tmp_path / "sub", 3600)
        assert cache.get(URL, Fetch(WSDL)) == WSDL
    finally:
        tmp_path.chmod(stat.S_IRWXU)


def test_an_unwritable_file_location_still_answers(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = WsdlCache(blocker / "wsdl", 3600)
    assert cache.get(URL, Fetch(WSDL)) == WSDL


def test_the_default_directory_follows_xdg(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "l1nda-sync" / "wsdl"
    assert WsdlCache(None, 1).directory == tmp_path / "l1nda-sync" / "wsdl"
