"""Airflow's login in front of every route, and what an action needs from it: the user and their own JWT.

`READ` is a router-level dependency of the whole app (Airflow's `requires_access_view(AccessView.PLUGINS)`: a
valid JWT from the `Authorization: Bearer` header or Airflow's `_token` cookie, else 401). Writes to the registry
(mute, resend, invite) also need permission to edit the sync DAG; a sync run is authorised by Airflow's own API,
called with the user's JWT.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagDetails
from airflow.api_fastapi.core_api.security import get_user, requires_access_view
from fastapi import Depends, HTTPException, Request

SYNC_DAG = "nmbrs_token_sync"

READ = Depends(requires_access_view(AccessView.PLUGINS))
USER = Depends(get_user)


def user_jwt(request: Request) -> str:
    """The JWT this request was authenticated with (the same precedence as Airflow's `get_user`)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    cookie = request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    if not cookie:  # get_user has let the request in, so one of the two is there; never guess
        raise HTTPException(401, "Not authenticated")
    return cookie


def user_name(user: Any) -> str:
    return str(user.get_name())


def may_operate(user: Any) -> bool:
    """Whether the user may change the sync's registry (mute, resend, invite): edit rights on the sync DAG."""
    return bool(get_auth_manager().is_authorized_dag(method="PUT", details=DagDetails(id=SYNC_DAG), user=user))


def require_operator(user: Any) -> None:
    if not may_operate(user):
        raise HTTPException(403, f"this needs edit rights on the DAG {SYNC_DAG} (Airflow role Op or Admin)")
