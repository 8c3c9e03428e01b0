"""No page and no JSON answer shows a token: tokens seeded with known plaintexts, every GET route scanned (the
list enumerated from the app), plus the pages after an action."""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Route

from tests.l1nda_sync.ui.conftest import SECRETS, Seeded


def test_no_answer_shows_a_secret(client: Any, app: Any, admin_jwt: str, seeded: Seeded) -> None:
    headers = {"Authorization": f"Bearer {admin_jwt}"}
    ids = {"token_id": [str(i) for i in seeded.tokens.values()]}
    pages: list[str] = []
    for route in app.routes:
        if not isinstance(route, Route) or "GET" not in (route.methods or ()):
            continue
        names = re.findall(r"\{(\w+)\}", route.path)
        assert set(names) <= set(ids), f"fill in {names} for {route.path}"
        if names:
            pages += [route.path.replace("{token_id}", i) for i in ids["token_id"]]
        else:
            pages.append(route.path)
    pages += ["/credentials?customer=anker", "/links?state=suspended", "/api/credentials?state=revoked"]
    seen = 0
    for path in pages:
        answer = client.get(path, headers=headers)
        assert answer.status_code == 200, path
        body = answer.text
        for name, secret in SECRETS.items():
            assert secret not in body, f"{name}'s token on {path}"
            assert secret[:-4] not in body, f"most of {name}'s token on {path}"
            assert secret[4:] not in body, f"most of {name}'s token on {path}"
        seen += 1
    assert seen >= 12
    # the masked tail is what the list shows
    listing = client.get("/credentials", headers=headers).text
    assert "…K4f5" in listing
    assert "…b8a9" in listing
