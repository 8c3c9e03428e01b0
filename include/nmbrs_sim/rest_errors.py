"""The REST API's error answers in the facts sheet's shape: {type, httpStatus, code, title, detail,
invalid-params?, docUrl}."""

from __future__ import annotations

from typing import Any

from aiohttp import web

DOC_URL = "https://developer.nmbrs.com/api/docs/errors"
# code -> (HTTP status, type, title, detail) as the OpenAPI document's examples write them
ERRORS: dict[int, tuple[int, str, str, str]] = {
    40033: (400, "validationError", "Parameter_Invalid", "Invalid parameter."),
    40101: (401, "authenticationError", "Missing_Token", "Token is missing on the authentication"),
    40102: (401, "authenticationError", "Invalid_Token", "Token is invalid."),
    40303: (403, "authenticationError", "Unauthorized_AccessData",
            "You do not have access for the debtor or company you are trying to reach. Contact the administrator "
            "of the environment and review access rights by tags/filters for your login on Template User."),
    40304: (403, "authenticationError", "Invalid_Subscription",
            "This environment is disabled, there is no valid subscription."),
    40306: (403, "authenticationError", "ForbiddenMultiDebtor.",
            "This call is not available for a consent that spans several debtors: use "
            "/api/debtors/{debtorId}/companies for each debtor."),
    40401: (404, "invalidRequestError", "Not_Found", "The resource was not found."),
    40404: (404, "invalidRequestError", "Invalid_Company", "The company does not exist."),
    42908: (429, "throttlingError", "Too_Many_Calls",
            "The amount of calls is above the threshold for your subscription plan."),
    42909: (429, "throttlingError", "Quota_Exceeded", "Out of call volume quota."),
    50001: (500, "apiError", "Unkown", "An unexpected error has occurred."),
}


class ApiError(Exception):
    """An error answer of the REST API; `response()` writes it."""

    def __init__(self, code: int, detail: str | None = None, invalid_params: list[dict[str, str]] | None = None
                 ) -> None:
        super().__init__(f"{code}")
        self.code = code
        self.detail = detail
        self.invalid_params = invalid_params

    def body(self) -> dict[str, Any]:
        status, kind, title, detail = ERRORS[self.code]
        body: dict[str, Any] = {"type": kind, "httpStatus": status, "code": self.code, "title": title,
                                "detail": self.detail or detail}
        if self.invalid_params:
            body["invalid-params"] = self.invalid_params
        body["docUrl"] = DOC_URL
        return body

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(self.body(), status=ERRORS[self.code][0], headers=headers)


def subscription_key_error(status: int, missing: bool) -> web.Response:
    """What the API gateway (Azure API Management, in front of developer.nmbrs.com) answers for a missing or
    wrong key; the status is a setting (the facts sheet does not know it)."""
    message = ("Access denied due to missing subscription key. Make sure to include subscription key when making "
               "requests to an API." if missing else
               "Access denied due to invalid subscription key. Make sure to provide a valid key for an active "
               "subscription.")
    return web.json_response({"statusCode": status, "message": message}, status=status)
