"""The operations: check the login and its rights against the world, then write the `<OpResponse>` element."""

from __future__ import annotations

from collections.abc import Callable

from nmbrs_sim.catalog import namespace
from nmbrs_sim.soap import SoapRequest, escape
from nmbrs_sim.world import ACCOUNTANT, Company, Debtor, Login, Tag, World

Handler = Callable[[World, Login, dict[str, int]], str]


def _opt(name: str, value: str | None) -> str:
    """Optional (minOccurs=0) fields that are null are left out, as .NET does."""
    return "" if value is None else f"<{name}>{escape(value)}</{name}>"


def _debtor_fields(d: Debtor) -> str:
    return f"<Id>{d.id}</Id>{_opt('Number', d.number)}{_opt('Name', d.name)}"


def _company(c: Company) -> str:
    return (f"<Company><ID>{c.id}</ID><Number>{c.number}</Number>{_opt('Name', c.name)}"
            f"{_opt('PhoneNumber', c.phone)}{_opt('FaxNumber', c.fax)}{_opt('Email', c.email)}"
            f"{_opt('Website', c.website)}<LoonaangifteTijdvak>{c.period}</LoonaangifteTijdvak>"
            f"{_opt('KvkNr', c.kvk)}</Company>")


def _tag(t: Tag) -> str:
    return f"<DebtorTag><Number>{t.number}</Number>{_opt('HexColor', t.color)}{_opt('Tag', t.name)}</DebtorTag>"


def _environment_get(world: World, login: Login, params: dict[str, int]) -> str:
    env = world.environments[login.environment]
    return f"<Domain>{escape(env.domain)}</Domain><SubDomain>{escape(env.sub_domain)}</SubDomain>"


def _debtor_list(world: World, login: Login, params: dict[str, int]) -> str:
    return "".join(f"<Debtor>{_debtor_fields(d)}</Debtor>" for d in world.visible_debtors(login))


def _debtor_get(world: World, login: Login, params: dict[str, int]) -> str:
    return _debtor_fields(world.reachable_debtor(login, params["DebtorId"]))


def _tags_get(world: World, login: Login, params: dict[str, int]) -> str:
    return "".join(_tag(t) for t in world.debtor_tags(login, params["DebtorId"]))


def _is_owner(world: World, login: Login, params: dict[str, int]) -> str:
    """Documented choice: a master (accountant) login owns its environment; a client login does not."""
    return "true" if login.level == ACCOUNTANT else "false"


def _company_list(world: World, login: Login, params: dict[str, int]) -> str:
    return "".join(_company(c) for c in world.visible_companies(login))


def _company_by_debtor(world: World, login: Login, params: dict[str, int]) -> str:
    return "".join(_company(c) for c in world.companies_of_debtor(login, params["DebtorId"]))


HANDLERS: dict[tuple[str, str], Handler] = {
    ("DebtorService", "Environment_Get"): _environment_get,
    ("DebtorService", "List_GetAll"): _debtor_list,
    ("DebtorService", "Debtor_Get"): _debtor_get,
    ("DebtorService", "Tags_Get"): _tags_get,
    ("DebtorService", "Debtor_IsOwner"): _is_owner,
    ("CompanyService", "List_GetAll"): _company_list,
    ("CompanyService", "List_GetByDebtor"): _company_by_debtor,
}


class ResponseCache:
    """Answers per (login, token, operation, params), valid for one world version: repeated reads cost a lookup."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self._version = -1
        self._entries: dict[tuple[object, ...], str] = {}
        self._max = max_entries

    def get(self, version: int, key: tuple[object, ...]) -> str | None:
        if version != self._version:
            self._entries.clear()
            self._version = version
            return None
        return self._entries.get(key)

    def put(self, key: tuple[object, ...], value: str) -> None:
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = value


def execute(world: World, request: SoapRequest, cache: ResponseCache | None = None) -> str:
    """The `<OpResponse>` element for one request; raises NmbrsFault (1001/1002/1003/1004) as Nmbrs would."""
    op = request.operation
    with world.lock:
        login = world.authenticate(request.username, request.token, request.domain,
                                   with_domain=op.header == "AuthHeaderWithDomain")
        world.authorize(login, op.service, op.name)
        key = (login.username, op.service, op.name, tuple(request.params.values()))
        inner = cache.get(world.version, key) if cache is not None else None
        if inner is None:
            inner = HANDLERS[(op.service, op.name)](world, login, request.params)
            if cache is not None:
                cache.put(key, inner)
    name = op.name
    result = f"<{name}Result>{inner}</{name}Result>" if inner else f"<{name}Result />"
    return f'<{name}Response xmlns="{namespace(op.service)}">{result}</{name}Response>'
