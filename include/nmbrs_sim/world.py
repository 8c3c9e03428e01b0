"""The simulated Nmbrs world (environments, debtors, companies, logins) and who may see what.

All public methods take the world's lock, so the SOAP handlers, the admin API and a test thread can share
one `World`. Every change bumps `version`, which invalidates cached answers.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nmbrs_sim.catalog import PERIODS, SERVICES
from nmbrs_sim.errors import NmbrsFault
from nmbrs_sim.rest_ids import UUID_NAMESPACE as UUID_NAMESPACE  # re-exported: its old home
from nmbrs_sim.rest_ids import RestIdIndex
from nmbrs_sim.rest_ids import derived_uuid as derived_uuid  # re-exported: tests import it from here

ACCOUNTANT = "accountant"
CLIENT = "client"
LEVELS = (ACCOUNTANT, CLIENT)
ALL = "all"
DEFAULT_TAG_COLOR = "#808080"
class WorldError(Exception):
    """A change the world refuses; `status` is the HTTP status the admin API answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Tag:
    """A debtor tag of an environment (number, name, colour)."""

    number: int
    name: str
    color: str | None = DEFAULT_TAG_COLOR


@dataclass(slots=True)
class Company:
    """A company of a debtor; `ended` companies are in nobody's lists. `uuid` is its REST companyId: the one the
    scenario gave (`given_uuid`), else derived from `id` when asked (a stored string per company costs memory)."""

    id: int
    number: int
    name: str | None
    debtor_id: int
    period: str = "Month"
    kvk: str | None = None
    phone: str | None = None
    fax: str | None = None
    email: str | None = None
    website: str | None = None
    ended: bool = False
    given_uuid: str | None = None

    @property
    def uuid(self) -> str:
        return self.given_uuid or derived_uuid("company", self.id)


@dataclass(slots=True)
class Debtor:
    """A debtor (an accountant's customer) with its tags and companies. `uuid` is its REST debtorId (given, or
    derived from `id` when asked, as for a company)."""

    id: int
    environment: str
    number: str | None = None
    name: str | None = None
    # Tuples, replaced on change: most debtors have 0-3 of each, and an empty tuple is shared, a list is not.
    tags: tuple[str, ...] = ()
    company_ids: tuple[int, ...] = ()
    given_uuid: str | None = None

    @property
    def uuid(self) -> str:
        return self.given_uuid or derived_uuid("debtor", self.id)


@dataclass(slots=True)
class Environment:
    """One Nmbrs customer environment (<sub_domain>.nmbrs.nl) with its tags and debtors."""

    sub_domain: str
    subscription_valid: bool = True
    product: str = "accountant"
    tags: dict[str, Tag] = field(default_factory=dict)
    debtor_ids: list[int] = field(default_factory=list)

    @property
    def domain(self) -> str:
        return f"{self.sub_domain}.nmbrs.nl"


@dataclass(slots=True)
class Login:
    """A login with its SOAP token and reach (tag filter or company filter); a `password` lets it consent over REST."""

    username: str
    environment: str
    level: str
    token: str
    tag_filter: str | list[str] = ALL
    company_filter: list[int] = field(default_factory=list)
    debtor: int | None = None
    # service -> allowed operation names; a service that is absent allows all its operations.
    template: dict[str, set[str]] = field(default_factory=dict)
    deleted: bool = False
    password: str | None = None  # set: the login can sign in on the identity server's consent page
    name: str | None = None  # the user's display name (REST /api/user/info)
    uuid: str = ""  # REST userId

    def allows(self, service: str, operation: str) -> bool:
        allowed = self.template.get(service)
        return allowed is None or operation in allowed

    def __repr__(self) -> str:  # never show the token
        return f"Login({self.username!r}, {self.level}, env={self.environment!r}, token=…{self.token[-4:]})"


def new_token() -> str:
    """32 lowercase hex characters, like the tokens observed from Nmbrs."""
    return secrets.token_hex(16)


class World:
    """Environments, debtors, companies and logins, and the access rules both protocols apply to them."""

    def __init__(self, *, accept_missing_domain: bool = False) -> None:
        self.lock = threading.RLock()
        self.version = 0
        self.accept_missing_domain = accept_missing_domain
        self.environments: dict[str, Environment] = {}
        self.debtors: dict[int, Debtor] = {}
        self.companies: dict[int, Company] = {}
        self.logins: dict[str, Login] = {}
        self.debtor_rest_ids = RestIdIndex("debtor")  # REST debtorId -> SOAP Debtor.Id
        self.company_rest_ids = RestIdIndex("company")  # REST companyId -> SOAP Company.ID

    # ------------------------------------------------------------------ lookups (raise WorldError 404)
    def _changed(self) -> None:
        self.version += 1

    def environment(self, sub_domain: str) -> Environment:
        env = self.environments.get(sub_domain.lower())
        if env is None:
            known = ", ".join(sorted(self.environments)) or "none"
            raise WorldError(f"unknown environment {sub_domain!r} (known: {known})", 404)
        return env

    def debtor(self, debtor_id: int) -> Debtor:
        debtor = self.debtors.get(debtor_id)
        if debtor is None:
            raise WorldError(f"unknown debtor id {debtor_id}", 404)
        return debtor

    def company(self, company_id: int) -> Company:
        company = self.companies.get(company_id)
        if company is None:
            raise WorldError(f"unknown company id {company_id}", 404)
        return company

    def login(self, username: str) -> Login:
        login = self.logins.get(username.lower())
        if login is None:
            raise WorldError(f"unknown login {username!r}", 404)
        return login

    def debtor_by_uuid(self, rest_id: str) -> Debtor | None:
        with self.lock:
            debtor_id = self.debtor_rest_ids.get(rest_id.lower())
            return None if debtor_id is None else self.debtors[debtor_id]

    def company_by_uuid(self, rest_id: str) -> Company | None:
        with self.lock:
            company_id = self.company_rest_ids.get(rest_id.lower())
            return None if company_id is None else self.companies[company_id]

    def rest_id_owner(self, kind: str, rest_id: str, soap_id: int) -> int | None:
        """Which other debtor/company ("debtor"/"company") has `rest_id` already, if `soap_id` is to get it."""
        index = self.debtor_rest_ids if kind == "debtor" else self.company_rest_ids
        with self.lock:
            if rest_id == derived_uuid(kind, soap_id):  # the usual case: only a given uuid can clash with it
                return index.given.get(rest_id)
            return index.get(rest_id)

    def _new_uuid(self, index: RestIdIndex, given: str | None, kind: str, soap_id: int) -> str | None:
        """The uuid `given` (checked) if it is not the derived one, None for the derived one; 409 if taken."""
        if given:
            rest_id = _checked_uuid(given, "uuid")
            owner = self.rest_id_owner(kind, rest_id, soap_id)
        else:  # skip deriving the uuid when no uuid was ever given (a large generated world)
            rest_id = derived_uuid(kind, soap_id) if index.given else ""
            owner = index.given.get(rest_id) if index.given else None
        if owner is not None:
            raise WorldError(f"uuid {rest_id} is used by {kind} {owner} already", 409)
        return rest_id if given and rest_id != derived_uuid(kind, soap_id) else None

    # ------------------------------------------------------------------ building
    def add_environment(self, sub_domain: str, *, subscription_valid: bool = True, product: str = "accountant"
                        ) -> Environment:
        with self.lock:
            key = sub_domain.lower()
            if key in self.environments:
                raise WorldError(f"environment {sub_domain!r} exists already", 409)
            env = Environment(key, subscription_valid, product)
            self.environments[key] = env
            self._changed()
            return env

    def ensure_tag(self, env: Environment, name: str, *, number: int | None = None, color: str | None = None
                   ) -> Tag:
        tag = env.tags.get(name)
        if tag is None:
            if number is None:
                number = max((t.number for t in env.tags.values()), default=0) + 1
            tag = Tag(number, name, color or DEFAULT_TAG_COLOR)
            env.tags[name] = tag
        return tag

    def add_debtor(self, environment: str, *, id: int, number: str | None = None, name: str | None = None,
                   tags: Iterable[str] = (), uuid: str | None = None) -> Debtor:
        with self.lock:
            env = self.environment(environment)
            if id in self.debtors:
                raise WorldError(f"debtor id {id} exists already", 409)
            rest_id = self._new_uuid(self.debtor_rest_ids, uuid, "debtor", id)
            names: list[str] = []
            for tag in tags:
                name_of_tag = self.ensure_tag(env, tag).name  # the tag's own string: one copy per environment
                if name_of_tag not in names:
                    names.append(name_of_tag)
            debtor = Debtor(id, env.sub_domain, number, name, tuple(names), given_uuid=rest_id)
            self.debtors[id] = debtor
            self.debtor_rest_ids.add(id, rest_id)
            env.debtor_ids.append(id)
            self._changed()
            return debtor

    def add_company(self, debtor_id: int, *, id: int, number: int, name: str | None = None, period: str = "Month",
                    kvk: str | None = None, uuid: str | None = None, **contact: str | None) -> Company:
        with self.lock:
            debtor = self.debtor(debtor_id)
            if id in self.companies:
                raise WorldError(f"company id {id} exists already", 409)
            if period not in PERIODS:
                raise WorldError(f"period {period!r} is not one of {', '.join(PERIODS)}")
            period = PERIODS[PERIODS.index(period)]  # the catalog's string, not one copy per company
            rest_id = self._new_uuid(self.company_rest_ids, uuid, "company", id)
            company = Company(id, number, name, debtor_id, period, kvk, **contact)  # type: ignore[arg-type]
            company.given_uuid = rest_id
            self.companies[id] = company
            self.company_rest_ids.add(id, rest_id)
            debtor.company_ids += (id,)
            self._changed()
            return company

    def add_login(self, environment: str, *, username: str, level: str, token: str | None = None,
                  tag_filter: str | list[str] | None = None, company_filter: Iterable[int] | None = None,
                  debtor: int | None = None, template: dict[str, Any] | str | None = None, deleted: bool = False,
                  password: str | None = None, name: str | None = None, uuid: str | None = None) -> Login:
        """A new login; an accountant's tag filter defaults to 'all', a client's company filter to none."""
        with self.lock:
            env = self.environment(environment)
            if not _is_text(username) or "@" not in username:
                raise WorldError(f"username must be an e-mail address, got {username!r}")
            if username.lower() in self.logins:
                raise WorldError(f"login {username!r} exists already", 409)
            if level not in LEVELS:
                raise WorldError(f"level {level!r} is not one of {', '.join(LEVELS)}")
            if token is not None and not _is_text(token):
                raise WorldError("token must be a non-empty string (leave it out to get a random one)")
            if level == ACCOUNTANT and tag_filter is None:
                tag_filter = ALL
            if password is not None and not _is_text(password):
                raise WorldError("password must be a non-empty string (leave it out: the login cannot consent)")
            login = Login(username, env.sub_domain, level, token or new_token(), deleted=bool(deleted),
                          password=password, name=name, uuid=_checked_uuid(uuid, "uuid") if uuid else
                          derived_uuid("login", username.lower()))
            self.logins[username.lower()] = login
            try:
                self._apply_login_changes(login, tag_filter=tag_filter, company_filter=company_filter,
                                          template=template, debtor=debtor)
            except WorldError:
                del self.logins[username.lower()]
                raise
            self._changed()
            return login

    # ------------------------------------------------------------------ admin changes
    def reset_token(self, username: str) -> str:
        with self.lock:
            login = self.login(username)
            login.token = new_token()
            self._changed()
            return login.token

    def set_password(self, username: str, password: str | None) -> None:
        """A password lets the login consent on the identity server's page; None takes that away."""
        if password is not None and (not _is_text(password) or len(password) < 4):
            raise WorldError("password must be a string of at least 4 characters, or null")
        with self.lock:
            self.login(username).password = password
            self._changed()

    def set_deleted(self, username: str, deleted: bool) -> None:
        with self.lock:
            self.login(username).deleted = deleted
            self._changed()

    def update_login(self, username: str, *, tag_filter: str | list[str] | None = None,
                     company_filter: Iterable[int] | None = None, template: dict[str, Any] | str | None = None,
                     debtor: int | None = None) -> Login:
        with self.lock:
            login = self.login(username)
            self._apply_login_changes(login, tag_filter=tag_filter, company_filter=company_filter,
                                      template=template, debtor=debtor)
            self._changed()
            return login

    def _apply_login_changes(self, login: Login, *, tag_filter: str | list[str] | None,
                             company_filter: Iterable[int] | None, template: dict[str, Any] | str | None,
                             debtor: int | None) -> None:
        """Validate everything first, then change: a refused change leaves the login as it was."""
        env = self.environment(login.environment)
        new_tag_filter = None if tag_filter is None else self._checked_tag_filter(login, env, tag_filter)
        new_company_filter = None if company_filter is None else self._checked_company_filter(login, env,
                                                                                                 company_filter)
        if debtor is not None:
            if login.level != CLIENT:
                raise WorldError("debtor applies to client (debtor-level) logins only")
            if self.debtor(debtor).environment != env.sub_domain:
                raise WorldError(f"debtor {debtor} is not in environment {env.sub_domain!r}")
        new_template = None if template is None else parse_template(template)
        if new_tag_filter is not None:
            login.tag_filter = new_tag_filter
        if new_company_filter is not None:
            login.company_filter = new_company_filter
        if debtor is not None:
            login.debtor = debtor
        if new_template is not None:
            login.template = new_template

    @staticmethod
    def _checked_tag_filter(login: Login, env: Environment, tag_filter: str | list[str]) -> str | list[str]:
        if login.level != ACCOUNTANT:
            raise WorldError(f"tag_filter applies to accountant logins only; {login.username!r} is a client")
        if isinstance(tag_filter, str):
            if tag_filter.lower() != ALL:
                raise WorldError(f"tag_filter must be 'all' or a list of tag names, not {tag_filter!r}")
            return ALL
        unknown = [t for t in tag_filter if t not in env.tags]
        if unknown:
            raise WorldError(f"tag_filter names unknown tag(s) {unknown} in environment {env.sub_domain!r} "
                             f"(known: {sorted(env.tags)})")
        return list(dict.fromkeys(tag_filter))

    def _checked_company_filter(self, login: Login, env: Environment, company_filter: Iterable[int]) -> list[int]:
        if login.level != CLIENT:
            raise WorldError(f"company_filter applies to client logins only; {login.username!r} is an accountant")
        ids = [int(c) for c in company_filter]
        for cid in ids:
            company = self.company(cid)
            if self.debtors[company.debtor_id].environment != env.sub_domain:
                raise WorldError(f"company {cid} is not in environment {env.sub_domain!r}")
        return list(dict.fromkeys(ids))

    def set_operation_allowed(self, username: str, service: str, operation: str, allowed: bool) -> None:
        with self.lock:
            login = self.login(username)
            if operation not in SERVICES.get(service, {}):
                raise WorldError(f"unknown operation {service}.{operation}", 404)
            ops = set(login.template.get(service, SERVICES[service]))
            if allowed:
                ops.add(operation)
            else:
                ops.discard(operation)
            if ops == set(SERVICES[service]):
                login.template.pop(service, None)
            else:
                login.template[service] = ops
            self._changed()

    def set_debtor_tags(self, debtor_id: int, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        """Add tags (unknown names become new tags of the environment) and remove tags from one debtor."""
        with self.lock:
            debtor = self.debtor(debtor_id)
            env = self.environment(debtor.environment)
            tags = list(debtor.tags)
            for name in add:
                self.ensure_tag(env, name)
                if name not in tags:
                    tags.append(name)
            removing = set(remove)
            debtor.tags = tuple(t for t in tags if t not in removing)
            self._changed()
            return list(debtor.tags)

    def move_company(self, company_id: int, debtor_id: int) -> None:
        with self.lock:
            company = self.company(company_id)
            target = self.debtor(debtor_id)
            source = self.debtor(company.debtor_id)
            if source.environment != target.environment:
                raise WorldError(f"company {company_id} can only move within environment {source.environment!r}")
            source.company_ids = tuple(c for c in source.company_ids if c != company_id)
            target.company_ids += (company_id,)
            company.debtor_id = debtor_id
            self._changed()

    def end_company(self, company_id: int, ended: bool = True) -> None:
        with self.lock:
            self.company(company_id).ended = ended
            self._changed()

    def set_subscription(self, environment: str, valid: bool) -> None:
        with self.lock:
            self.environment(environment).subscription_valid = valid
            self._changed()

    def set_accept_missing_domain(self, accept: bool) -> None:
        with self.lock:
            self.accept_missing_domain = accept
            self._changed()

    # ------------------------------------------------------------------ access rules (raise NmbrsFault)
    def authenticate(self, username: str | None, token: str | None, domain: str | None, *, with_domain: bool
                     ) -> Login:
        """1001 for an unknown user, a wrong (or reset) token, a deleted login or a wrong/missing domain."""
        login = self.logins.get(username.lower()) if username else None
        if login is None or login.deleted or not token:
            raise NmbrsFault(1001)
        if not hmac.compare_digest(login.token.encode(), token.encode()):
            raise NmbrsFault(1001)
        if with_domain:
            if domain is None or domain == "":
                if not self.accept_missing_domain:
                    raise NmbrsFault(1001)
            elif domain.strip().lower() != login.environment:
                raise NmbrsFault(1001)
        return login

    def authorize(self, login: Login, service: str, operation: str) -> Environment:
        """1004 without a valid subscription, then 1002 when the template switches the operation off."""
        env = self.environments[login.environment]
        if not env.subscription_valid:
            raise NmbrsFault(1004)
        if not login.allows(service, operation):
            raise NmbrsFault(1002)
        return env

    def _live_companies(self, debtor: Debtor) -> list[Company]:
        companies = self.companies
        return [c for c in (companies[i] for i in debtor.company_ids) if not c.ended]

    def _client_companies(self, login: Login) -> list[Company]:
        env = login.environment
        result = []
        for cid in login.company_filter:
            company = self.companies.get(cid)
            if company is None or company.ended:
                continue
            debtor = self.debtors[company.debtor_id]
            if debtor.environment != env or (login.debtor is not None and company.debtor_id != login.debtor):
                continue
            result.append(company)
        return result

    def visible_debtors(self, login: Login) -> list[Debtor]:
        """A master login: the debtors its tag filter matches. A client login: the debtors of its companies."""
        env = self.environments[login.environment]
        if login.level == ACCOUNTANT:
            debtors = [self.debtors[i] for i in env.debtor_ids]
            if login.tag_filter == ALL:
                return debtors
            wanted = set(login.tag_filter)
            return [d for d in debtors if wanted.intersection(d.tags)]
        seen = dict.fromkeys(c.debtor_id for c in self._client_companies(login))
        return [self.debtors[i] for i in env.debtor_ids if i in seen]

    def visible_companies(self, login: Login) -> list[Company]:
        if login.level == ACCOUNTANT:
            return [c for d in self.visible_debtors(login) for c in self._live_companies(d)]
        return sorted(self._client_companies(login), key=lambda c: c.id)

    def reachable_debtor(self, login: Login, debtor_id: int) -> Debtor:
        """The debtor if the login reaches it; 1003 otherwise, also for ids that do not exist."""
        for debtor in self.visible_debtors(login):
            if debtor.id == debtor_id:
                return debtor
        raise NmbrsFault(1003)

    def companies_of_debtor(self, login: Login, debtor_id: int) -> list[Company]:
        debtor = self.reachable_debtor(login, debtor_id)
        if login.level == ACCOUNTANT:
            return self._live_companies(debtor)
        return [c for c in self.visible_companies(login) if c.debtor_id == debtor_id]

    def debtor_tags(self, login: Login, debtor_id: int) -> list[Tag]:
        debtor = self.reachable_debtor(login, debtor_id)
        env = self.environments[debtor.environment]
        return [env.tags[name] for name in debtor.tags]


def _is_text(value: object) -> bool:
    """A non-blank string (admin API input is JSON: anything may arrive where a string belongs)."""
    return isinstance(value, str) and bool(value.strip())


def _checked_uuid(value: object, name: str) -> str:
    """A UUID in its canonical lowercase form; WorldError naming `name` otherwise."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise WorldError(f"{name} must be a UUID like 45d8ad44-ffb8-4691-87d8-7a7a5f4376e9, got {value!r}") from None


def parse_template(template: dict[str, Any] | str) -> dict[str, set[str]]:
    """'all' -> every operation; {service: [operations] | 'all'} -> only those (services left out allow all)."""
    if isinstance(template, str):
        if template.lower() == ALL:
            return {}
        raise WorldError(f"template must be 'all' or a mapping of service to operations, not {template!r}")
    if not isinstance(template, dict):
        raise WorldError("template must be 'all' or a mapping of service to a list of operations")
    result: dict[str, set[str]] = {}
    for service, ops in template.items():
        if service not in SERVICES:
            raise WorldError(f"template names unknown service {service!r} (known: {', '.join(SERVICES)})")
        if isinstance(ops, str) and ops.lower() == ALL:
            continue
        if not isinstance(ops, list | tuple | set):
            raise WorldError(f"template.{service} must be 'all' or a list of operations")
        unknown = [op for op in ops if op not in SERVICES[service]]
        if unknown:
            raise WorldError(f"template.{service} names unknown operation(s) {unknown} "
                             f"(known: {', '.join(SERVICES[service])})")
        allowed = set(ops)
        if allowed != set(SERVICES[service]):
            result[service] = allowed
    return result
