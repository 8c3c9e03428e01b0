"""What the REST side serves, named for the call log and fault rules: service `REST` (operations are the OpenAPI
document's operationIds) and service `Identity` (the identity server's endpoints)."""

from __future__ import annotations

REST_SERVICE = "REST"
IDENTITY_SERVICE = "Identity"
REST_OPERATIONS = ("getDebtors", "getCompanies", "getCompaniesByDebtor", "getUserInfo", "getCurrentPeriod")
IDENTITY_OPERATIONS = ("discovery", "jwks", "authorize", "token", "revocation")
HTTP_SERVICES: dict[str, tuple[str, ...]] = {REST_SERVICE: REST_OPERATIONS, IDENTITY_SERVICE: IDENTITY_OPERATIONS}

API_PREFIX = "/api/"
CONNECT_PREFIX = "/connect/"
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/openid-configuration/jwks"
