"""REST answers read strictly and every status mapped from its code, never from wording (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from l1nda_sync.nmbrs.errors import (
    DataNotAllowed,
    MalformedAnswer,
    NmbrsError,
    NoSubscription,
    QuotaExceeded,
    ScopeMissing,
    Throttled,
    TransientError,
    UnknownNmbrsError,
)
from l1nda_sync.nmbrs.rest.answers import SubscriptionKeyRejected, TokenRefused, error_for_status, has_scope, read_page
from l1nda_sync.nmbrs.rest.probe import COMPANIES_OF_DEBTOR, DEBTORS, USER_INFO

PAGINATION = {"pageNumber": 1, "pageSize": 100, "totalPages": 1, "nextPage": None}


def _error(status: int, code: int | None, *, endpoint: Any = DEBTORS, scopes: tuple[str, ...] | None = None,
           retry_after: float | None = None) -> NmbrsError:
    body = None if code is None else {"type": "apiError", "httpStatus": status, "code": code, "title": "T",
                                      "detail": "D"}
    return error_for_status(status, body, endpoint=endpoint, scopes=scopes, retry_after=retry_after,
                            scrub=lambda text: text)


@pytest.mark.parametrize("body", [
    {}, {"data": []}, {"pagination": PAGINATION}, {"data": None, "pagination": PAGINATION},
    {"data": {"debtorId": "x"}, "pagination": PAGINATION}, {"data": [], "pagination": None}, [], "text", None,
    {"data": [None], "pagination": PAGINATION}, {"data": ["x"], "pagination": PAGINATION},
])
def test_an_answer_without_data_and_pagination_is_malformed_never_empty(body: Any) -> None:
    with pytest.raises(MalformedAnswer) as caught:
        read_page(body, DEBTORS)
    assert caught.value.outcome == "transient"


@pytest.mark.parametrize(("following", "more"), [(None, False), ("", False), ("https://x/api/debtors?pageNumber=2",
                                                                                True)])
def test_next_page_null_or_blank_ends_the_pages(following: str | None, more: bool) -> None:
    pagination = {**PAGINATION, "totalPages": 2 if more else 1, "nextPage": following}
    rows, has_more = read_page({"data": [{"a": 1}], "pagination": pagination}, DEBTORS)
    assert rows == [{"a": 1}]
    assert has_more is more


def test_401_codes_are_token_refusals_and_a_gateway_401_is_the_subscription_key() -> None:
    assert isinstance(_error(401, 40101), TokenRefused)
    assert isinstance(_error(401, 40102), TokenRefused)
    gateway = error_for_status(401, {"statusCode": 401, "message": "Access denied due to invalid subscription key."},
                               endpoint=DEBTORS, scopes=None, retry_after=None, scrub=lambda t: t)
    assert isinstance(gateway, SubscriptionKeyRejected)
    assert gateway.outcome == "unknown"
    assert "invalid subscription key" in str(gateway)


def test_40303_is_a_missing_scope_on_a_scope_only_path_and_data_elsewhere() -> None:
    on_list = _error(403, 40303)
    assert isinstance(on_list, ScopeMissing)
    assert on_list.scope == "company.info.read"
    assert on_list.service is None
    assert on_list.operation == "company.info.read"
    user = _error(403, 40303, endpoint=USER_INFO)
    assert isinstance(user, ScopeMissing)
    assert user.scope == "user.info.read"
    on_debtor = _error(403, 40303, endpoint=COMPANIES_OF_DEBTOR, scopes=("offline_access", "company.info.read"))
    assert type(on_debtor) is DataNotAllowed
    assert on_debtor.outcome == "data_not_allowed"
    unknown_scopes = _error(403, 40303, endpoint=COMPANIES_OF_DEBTOR)
    assert type(unknown_scopes) is DataNotAllowed
    lacking = _error(403, 40303, endpoint=COMPANIES_OF_DEBTOR, scopes=("offline_access",))
    assert isinstance(lacking, ScopeMissing)
    assert type(_error(403, 40305, endpoint=COMPANIES_OF_DEBTOR)) is DataNotAllowed


def test_a_write_scope_satisfies_reads_of_its_area() -> None:
    assert has_scope(("company.info.write",), "company.info.read")
    assert has_scope(("company.info",), "company.info.read")
    assert not has_scope(("debtor.info.read",), "company.info.read")


def test_other_statuses() -> None:
    assert isinstance(_error(403, 40304), NoSubscription)
    waf = _error(403, None)
    assert type(waf) is TransientError
    assert not waf.retryable
    throttled = _error(429, 42908, retry_after=3)
    assert isinstance(throttled, Throttled)
    assert throttled.retryable
    assert throttled.retry_after == 3
    assert isinstance(_error(429, None), Throttled)
    quota = _error(429, 42909, retry_after=60)
    assert isinstance(quota, QuotaExceeded)
    assert isinstance(quota, TransientError)
    assert not quota.retryable
    for status in (500, 502, 503, 504, 408):
        error = _error(status, None)
        assert type(error) is TransientError
        assert error.retryable
    assert type(_error(503, 50301)) is TransientError
    assert type(_error(400, 40033)) is UnknownNmbrsError
    assert type(_error(404, 40401)) is UnknownNmbrsError
    assert type(_error(404, 40401, endpoint=COMPANIES_OF_DEBTOR)) is DataNotAllowed
    assert _error(500, None).code is None
    assert "HTTP 500 (not JSON)" in str(_error(500, None))


def test_rest_errors_pickle_with_their_fields() -> None:
    import pickle

    error = _error(403, 40303)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert isinstance(copy, ScopeMissing)
    assert copy.scope == "company.info.read"
    assert str(copy) == str(error)


def test_40303_on_the_debtor_list_with_the_scope_granted_is_the_logins_rights_not_the_scope() -> None:
    """The consent has company.info.read, so a 40303 on /api/debtors is not a missing scope (a consent again would
    not help): the consenting login lacks the rights in Nmbrs."""
    granted = _error(403, 40303, scopes=("offline_access", "company.info.read"))
    assert type(granted) is DataNotAllowed
    assert "lacks the rights" in str(granted)
    assert "company.info.read" in str(granted)
    by_write = _error(403, 40303, scopes=("offline_access", "company.info"))
    assert type(by_write) is DataNotAllowed
    lacking = _error(403, 40303, scopes=("offline_access",))
    assert isinstance(lacking, ScopeMissing)
    assert isinstance(_error(403, 40303), ScopeMissing), "scopes unknown: as before"


FULL = {"pageNumber": 1, "pageSize": 2, "totalPages": 2, "totalRecords": 3}


@pytest.mark.parametrize(("pagination", "rows"), [
    ({**FULL, "nextPage": None}, 2),  # page 1 of 2, but no next page: the rest never comes
    ({**FULL, "nextPage": "p2"}, 1),  # page 1 of 2 short of its 2 rows
    ({**FULL, "pageNumber": 2, "nextPage": None}, 2),  # the last page holds 1 of the 3 records, not 2
    ({**FULL, "pageNumber": 2, "nextPage": "p3"}, 1),  # a page past totalPages
    ({"pageNumber": 1, "totalRecords": 5, "nextPage": None}, 3),  # the only page, 3 of 5
])
def test_a_page_that_disagrees_with_its_totals_is_a_partial_answer(pagination: dict[str, Any], rows: int) -> None:
    with pytest.raises(MalformedAnswer, match="partial") as caught:
        read_page({"data": [{"a": i} for i in range(rows)], "pagination": pagination}, DEBTORS)
    assert caught.value.outcome == "transient"


@pytest.mark.parametrize(("pagination", "rows", "more"), [
    ({**FULL, "nextPage": "p2"}, 2, True),
    ({**FULL, "pageNumber": 2, "nextPage": ""}, 1, False),
    ({"pageNumber": 1, "pageSize": 100, "totalPages": 0, "totalRecords": 0, "nextPage": None}, 0, False),
    ({"pageNumber": 1, "pageSize": 100, "nextPage": None}, 1, False),  # no totals given: nothing to check
])
def test_pages_that_agree_with_their_totals_are_read(pagination: dict[str, Any], rows: int, more: bool) -> None:
    found, following = read_page({"data": [{"a": i} for i in range(rows)], "pagination": pagination}, DEBTORS)
    assert (len(found), following) == (rows, more)
