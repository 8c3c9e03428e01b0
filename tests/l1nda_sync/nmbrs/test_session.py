"""The pooled session reads the environment once: proxies (with NO_PROXY) and the CA bundle."""

from __future__ import annotations

import pytest

from l1nda_sync.nmbrs.transport import pooled_session


def test_proxy_and_ca_bundle_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/company-ca.pem")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = pooled_session(8, "https://api.nmbrs.nl/soap/v3/")
    assert session.trust_env is False  # no per-request lookups
    assert session.proxies.get("https") == "http://proxy.internal:3128"
    assert session.verify == "/etc/company-ca.pem"


def test_no_proxy_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    session = pooled_session(8, "http://127.0.0.1:8080/soap/v3/")
    assert "http" not in session.proxies
