"""Scenario files (YAML or JSON): read, validate with errors naming file, path and field, build a `World`.

See `scenarios/example.yaml` for the commented format. `world_to_scenario` writes the same format back,
so `/_sim/world` output can be saved and served again.
"""

from __future__ import annotations

import gc
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from nmbrs_sim.catalog import PERIODS
from nmbrs_sim.injection import FAULT_KINDS, KNOWN_SERVICES, PARAMS, FaultRule, rule_from_dict
from nmbrs_sim.json_stream import LazyList, lazy_document
from nmbrs_sim.rest_clients import RestConfig, parse_rest
from nmbrs_sim.world import ACCOUNTANT, ALL, CLIENT, LEVELS, World, WorldError, derived_uuid

_T = TypeVar("_T")
_PLAIN_COMPANY_FIELDS = frozenset({"id", "number", "name", "period", "kvk", "ended"})
SUB_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
HEX_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")


class ScenarioError(ValueError):
    """A broken scenario: names the source (file), the path inside it and what to fix."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source = source
        self.path = path
        self.message = message
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {message}")


@dataclass
class Scenario:
    """A validated scenario: the world plus the simulator settings it asks for."""

    world: World
    faults: list[FaultRule] = field(default_factory=list)
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    seed: int = 0
    max_body_bytes: int = 1_000_000
    source: str = "<dict>"
    rest: RestConfig = field(default_factory=RestConfig)


def read_scenario_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML or JSON scenario file into a dict (syntax errors name the file, line and column)."""
    path = Path(path)
    return parse_scenario_text(_read_text(path), path.suffix, str(path))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), "", f"cannot read the file ({exc.strerror or exc})") from None


def parse_scenario_text(text: str, suffix: str, source: str, *, lazy: bool = False,
                        compressed: bytes | None = None) -> dict[str, Any]:
    """Parse scenario text (JSON if `suffix` is .json, YAML otherwise). `lazy`: a JSON file's environments are
    decoded one at a time while the world is built (see `json_stream`, also for `compressed`); `load_scenario`
    accepts that result."""
    try:
        if suffix.lower() == ".json":
            data = lazy_document(text, compressed) if lazy else json.loads(text)
        else:
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except json.JSONDecodeError as exc:
        raise ScenarioError(source, f"line {exc.lineno}, column {exc.colno}", f"invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(source, where, f"invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ScenarioError(source, "", "the top level must be a mapping with an 'environments' list")
    return data


def load_scenario(scenario: str | Path | dict[str, Any], *, source: str = "<dict>") -> Scenario:
    """A path to a YAML/JSON file, or an already-parsed dict (errors then name `source`), as a `Scenario`."""
    if isinstance(scenario, dict):
        return _Builder(source).build(scenario)
    path = Path(scenario)
    return _Builder(str(scenario)).build(parse_scenario_text(_read_text(path), path.suffix, str(scenario), lazy=True))


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self._shared: dict[Any, Any] = {}  # equal values met during the build, to store one object of each

    def shared(self, value: _T) -> _T:
        """One object for equal values (debtor numbers like 'D0001' and company numbers repeat per environment)."""
        return self._shared.setdefault(value, value)  # type: ignore[no-any-return]

    def fail(self, path: str, message: str) -> ScenarioError:
        return ScenarioError(self.source, path, message)

    # ---------------------------------------------------------------- typed field readers
    def mapping(self, value: Any, path: str, allowed: set[str], required: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping, got {type(value).__name__}")
        for key in value:
            if key not in allowed:
                raise self.fail(f"{path}.{key}" if path else str(key),
                                f"unknown field (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if value.get(key) is None:
                raise self.fail(f"{path}.{key}" if path else key, "is required")
        return value

    def items(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list, got {type(value).__name__}")
        return value

    def integer(self, value: Any, path: str, *, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {value}")
        return value

    def number(self, value: Any, path: str, *, minimum: float = 0.0, maximum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"must be a number, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise self.fail(path, f"must be {bound}, got {value}")
        return float(value)

    def text(self, value: Any, path: str, *, optional: bool = True) -> str | None:
        if value is None:
            if optional:
                return None
            raise self.fail(path, "is required")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(path, f"must be a string, got {value!r}")
        return str(value)

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, got {value!r}")
        return value

    # ---------------------------------------------------------------- the document
    def build(self, data: dict[str, Any]) -> Scenario:
        """The scenario of `data`; the cyclic garbage collector pauses meanwhile (a large world is millions of
        new objects and no garbage: each collection would only scan them again)."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._build(data)
        finally:
            self._shared.clear()
            if collecting:
                gc.enable()

    def _build(self, data: dict[str, Any]) -> Scenario:
        top = self.mapping(data, "", {"settings", "environments", "faults", "latency", "rest"}, ("environments",))
        settings = self.mapping(top.get("settings") or {}, "settings",
                                {"accept_missing_domain", "seed", "max_body_bytes"})
        world = World(accept_missing_domain=self.boolean(settings.get("accept_missing_domain"),
                                                         "settings.accept_missing_domain", False))
        scenario = Scenario(world=world, source=self.source)
        if settings.get("seed") is not None:
            scenario.seed = self.integer(settings["seed"], "settings.seed")
        if settings.get("max_body_bytes") is not None:
            scenario.max_body_bytes = self.integer(settings["max_body_bytes"], "settings.max_body_bytes",
                                                   minimum=1024)
        environments = top["environments"]
        if not isinstance(environments, LazyList):
            environments = self.items(environments, "environments")
        # Each environment is built and then dropped (a LazyList decodes the next one only now): only the
        # logins are kept, to add last, since their filters may name companies of any debtor in their environment.
        logins_of: list[tuple[str, Any]] = []
        for i, env in enumerate(environments):
            self.environment(world, env, f"environments[{i}]")
            logins_of.append((env["sub_domain"], env.get("logins")))
            del env
        for i, (sub, logins) in enumerate(logins_of):
            for j, login in enumerate(self.items(logins, f"environments[{i}].logins")):
                self.login(world, sub, login, f"environments[{i}].logins[{j}]")
        if top.get("latency") is not None:
            latency = self.mapping(top["latency"], "latency", {"ms", "jitter_ms"}, ("ms",))
            scenario.latency_ms = self.number(latency["ms"], "latency.ms")
            scenario.latency_jitter_ms = self.number(latency.get("jitter_ms", 0), "latency.jitter_ms")
        for i, rule in enumerate(self.items(top.get("faults"), "faults")):
            scenario.faults.append(self.fault(world, rule, f"faults[{i}]", i))
        if top.get("rest") is not None:
            scenario.rest = parse_rest(self, top["rest"])
        return scenario

    def rest_id(self, value: Any, path: str) -> str | None:
        """An optional REST UUID (debtorId, companyId, userId)."""
        text = self.text(value, path)
        if text is None:
            return None
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise self.fail(path, f"{text!r} is not a UUID like 45d8ad44-ffb8-4691-87d8-7a7a5f4376e9") from None

    def environment(self, world: World, env: Any, path: str) -> None:
        env = self.mapping(env, path, {"sub_domain", "subscription_valid", "product", "tags", "debtors", "logins"},
                           ("sub_domain",))
        sub = self.text(env["sub_domain"], f"{path}.sub_domain", optional=False)
        if not SUB_DOMAIN.match(sub or ""):
            raise self.fail(f"{path}.sub_domain", f"{sub!r} is not a sub-domain (lowercase letters, digits, '-')")
        if sub in world.environments:
            raise self.fail(f"{path}.sub_domain", f"{sub!r} is used by an earlier environment")
        product = env.get("product", "accountant")
        if product not in ("accountant", "business"):
            raise self.fail(f"{path}.product", f"must be 'accountant' or 'business', got {product!r}")
        subscription_valid = self.boolean(env.get("subscription_valid"), f"{path}.subscription_valid", True)
        environment = world.add_environment(sub or "", subscription_valid=subscription_valid, product=product)
        for i, tag in enumerate(self.items(env.get("tags"), f"{path}.tags")):
            tpath = f"{path}.tags[{i}]"
            tag = self.mapping(tag, tpath, {"name", "number", "color"}, ("name",))
            name = self.text(tag["name"], f"{tpath}.name", optional=False) or ""
            if name in environment.tags:
                raise self.fail(f"{tpath}.name", f"tag {name!r} is declared twice")
            number = self.integer(tag["number"], f"{tpath}.number", minimum=1) if "number" in tag else None
            if number is not None and any(t.number == number for t in environment.tags.values()):
                raise self.fail(f"{tpath}.number", f"tag number {number} is used twice")
            color = self.text(tag.get("color"), f"{tpath}.color")
            if color is not None and not HEX_COLOR.match(color):
                raise self.fail(f"{tpath}.color", f"{color!r} is not a colour like '#1A2B3C'")
            world.ensure_tag(environment, name, number=number, color=color)
        for i, debtor in enumerate(self.items(env.get("debtors"), f"{path}.debtors")):
            self.debtor(world, sub or "", debtor, f"{path}.debtors[{i}]")

    def debtor(self, world: World, sub: str, debtor: Any, path: str) -> None:
        debtor = self.mapping(debtor, path, {"id", "uuid", "number", "name", "tags", "companies"}, ("id",))
        debtor_id = self.integer(debtor["id"], f"{path}.id", minimum=1)
        if debtor_id in world.debtors:
            raise self.fail(f"{path}.id", f"debtor id {debtor_id} is used twice")
        tags = [self.text(t, f"{path}.tags[{k}]", optional=False)
                for k, t in enumerate(self.items(debtor.get("tags"), f"{path}.tags"))]
        rest_id = self.rest_id(debtor.get("uuid"), f"{path}.uuid")
        if rest_id is not None and world.rest_id_owner("debtor", rest_id, debtor_id) is not None:
            raise self.fail(f"{path}.uuid", f"uuid {rest_id} is used twice")
        world.add_debtor(sub, id=debtor_id, number=self.shared(self.text(debtor.get("number"), f"{path}.number")),
                         name=self.text(debtor.get("name"), f"{path}.name"), tags=tags,  # type: ignore[arg-type]
                         uuid=rest_id)
        for i, company in enumerate(self.items(debtor.get("companies"), f"{path}.companies")):
            if not self.plain_company(world, debtor_id, company):
                self.company(world, debtor_id, company, f"{path}.companies[{i}]")

    def plain_company(self, world: World, debtor_id: int, company: Any) -> bool:
        """Add a company that needs no checking beyond a glance (ids and number integers, texts strings, the
        common fields only) and say True; False leaves anything else to `company`, which words any error.
        A large world is hundreds of thousands of these: this skips building a path for each field."""
        if type(company) is not dict or not company.keys() <= _PLAIN_COMPANY_FIELDS:
            return False
        company_id, number = company.get("id"), company.get("number")
        name, kvk, period = company.get("name"), company.get("kvk"), company.get("period", "Month")
        if (type(company_id) is not int or company_id < 1 or company_id in world.companies
                or type(number) is not int or period not in PERIODS
                or not (name is None or type(name) is str) or not (kvk is None or type(kvk) is str)):
            return False
        ended = company.get("ended", False)
        if type(ended) is not bool:
            return False
        created = world.add_company(debtor_id, id=company_id, number=self.shared(number), name=name, period=period,
                                    kvk=kvk)
        created.ended = ended
        return True

    def company(self, world: World, debtor_id: int, company: Any, path: str) -> None:
        contact = ("phone", "fax", "email", "website")
        company = self.mapping(company, path, {"id", "uuid", "number", "name", "period", "kvk", "ended", *contact},
                               ("id", "number"))
        company_id = self.integer(company["id"], f"{path}.id", minimum=1)
        if company_id in world.companies:
            raise self.fail(f"{path}.id", f"company id {company_id} is used twice")
        period = company.get("period", "Month")
        if period not in PERIODS:
            raise self.fail(f"{path}.period", f"{period!r} is not one of {', '.join(PERIODS)}")
        rest_id = self.rest_id(company.get("uuid"), f"{path}.uuid")
        if rest_id is not None and world.rest_id_owner("company", rest_id, company_id) is not None:
            raise self.fail(f"{path}.uuid", f"uuid {rest_id} is used twice")
        created = world.add_company(
            debtor_id, id=company_id, number=self.shared(self.integer(company["number"], f"{path}.number")),
            uuid=rest_id,
            name=self.text(company.get("name"), f"{path}.name"), period=period,
            kvk=self.text(company.get("kvk"), f"{path}.kvk"),
            **{key: self.text(company[key], f"{path}.{key}") for key in contact if company.get(key) is not None})
        created.ended = self.boolean(company.get("ended"), f"{path}.ended", False)

    def login(self, world: World, sub: str, login: Any, path: str) -> None:
        login = self.mapping(login, path, {"username", "level", "token", "tag_filter", "company_filter", "debtor",
                                           "template", "deleted", "password", "name", "uuid"},
                             ("username", "level"))
        username = self.text(login["username"], f"{path}.username", optional=False) or ""
        if "@" not in username:
            raise self.fail(f"{path}.username", f"{username!r} is not an e-mail address")
        if username.lower() in world.logins:
            raise self.fail(f"{path}.username", f"login {username!r} is used twice (usernames are unique)")
        level = login["level"]
        if level not in LEVELS:
            raise self.fail(f"{path}.level", f"must be one of {', '.join(LEVELS)}, got {level!r}")
        token = self.text(login.get("token"), f"{path}.token")
        if token is not None and not token.strip():
            raise self.fail(f"{path}.token", "must not be empty (leave it out to get a random token)")
        if level == CLIENT and "tag_filter" in login:
            raise self.fail(f"{path}.tag_filter", "only accountant logins have a tag filter; use company_filter")
        if level == ACCOUNTANT and ("company_filter" in login or "debtor" in login):
            key = "company_filter" if "company_filter" in login else "debtor"
            raise self.fail(f"{path}.{key}", "only client logins have this; an accountant login uses tag_filter")
        tag_filter, company_filter, debtor = self.login_reach(world, sub, login, level, path)
        template = login.get("template")
        password = self.text(login.get("password"), f"{path}.password")
        if password is not None and len(password) < 4:
            raise self.fail(f"{path}.password", "must be at least 4 characters (leave it out: no consent)")
        try:
            world.add_login(sub, username=username, level=level, token=token, tag_filter=tag_filter,
                            company_filter=company_filter if level == CLIENT else None, debtor=debtor,
                            template=template,
                            deleted=self.boolean(login.get("deleted"), f"{path}.deleted", False),
                            password=password, name=self.text(login.get("name"), f"{path}.name"),
                            uuid=self.rest_id(login.get("uuid"), f"{path}.uuid"))
        except WorldError as exc:
            raise self.fail(f"{path}.{_field_of(str(exc))}", str(exc)) from None

    def login_reach(self, world: World, sub: str, login: dict[str, Any], level: str, path: str
                    ) -> tuple[str | list[str] | None, list[int], int | None]:
        """A login's tag filter, company filter and debtor, each checked against its environment."""
        raw_tags = login.get("tag_filter", ALL if level == ACCOUNTANT else None)
        tag_filter: str | list[str] | None = raw_tags
        if raw_tags is not None and not (isinstance(raw_tags, str) and raw_tags.lower() == ALL):
            tag_filter = [self.text(t, f"{path}.tag_filter[{k}]", optional=False) or ""
                          for k, t in enumerate(self.items(raw_tags, f"{path}.tag_filter"))]
        company_filter = [self.integer(c, f"{path}.company_filter[{k}]")
                          for k, c in enumerate(self.items(login.get("company_filter"), f"{path}.company_filter"))]
        for k, cid in enumerate(company_filter):
            company = world.companies.get(cid)
            if company is None or world.debtors[company.debtor_id].environment != sub:
                raise self.fail(f"{path}.company_filter[{k}]", f"no company {cid} in environment {sub!r}")
        debtor = self.integer(login["debtor"], f"{path}.debtor") if login.get("debtor") is not None else None
        if debtor is not None and (debtor not in world.debtors or world.debtors[debtor].environment != sub):
            raise self.fail(f"{path}.debtor", f"no debtor {debtor} in environment {sub!r}")
        return tag_filter, company_filter, debtor

    def fault(self, world: World, rule: Any, path: str, index: int) -> FaultRule:
        params = {name for kind_params in PARAMS.values() for name in kind_params}
        rule = self.mapping(rule, path, {"kind", "username", "service", "operation", "path", "probability", "count",
                                         *params}, ("kind",))
        if rule["kind"] not in FAULT_KINDS:
            raise self.fail(f"{path}.kind", f"{rule['kind']!r} is not one of {', '.join(FAULT_KINDS)}")
        if rule.get("service") is not None and rule["service"] not in KNOWN_SERVICES:
            raise self.fail(f"{path}.service",
                            f"unknown service {rule['service']!r} (known: {', '.join(KNOWN_SERVICES)})")
        if rule.get("username") is not None and str(rule["username"]).lower() not in world.logins:
            raise self.fail(f"{path}.username", f"no login {rule['username']!r} in this scenario")
        try:
            return rule_from_dict(rule, rule_id=f"scenario-{index}")
        except ValueError as exc:
            field_name = _field_of(str(exc))
            raise self.fail(f"{path}.{field_name}" if field_name != "?" else path, str(exc)) from None


def _field_of(message: str) -> str:
    """The field a WorldError/ValueError message starts with ('tag_filter names ...' -> 'tag_filter')."""
    first = message.split(" ", 1)[0].split(".", 1)[0]
    return first if re.fullmatch(r"[a-z_]+", first) else "?"


def world_to_scenario(world: World, *, faults: list[FaultRule] | None = None, latency_ms: float = 0.0,
                      latency_jitter_ms: float = 0.0, rest: RestConfig | None = None) -> dict[str, Any]:
    """The world as a scenario dict (tokens included: this is the simulator's own admin view)."""
    with world.lock:
        environments = []
        for env in world.environments.values():
            debtors = []
            for debtor_id in env.debtor_ids:
                debtor = world.debtors[debtor_id]
                companies = []
                for cid in debtor.company_ids:
                    c = world.companies[cid]
                    row: dict[str, Any] = {"id": c.id, "uuid": c.uuid, "number": c.number, "name": c.name,
                                           "period": c.period}
                    for key in ("kvk", "phone", "fax", "email", "website"):
                        if getattr(c, key) is not None:
                            row[key] = getattr(c, key)
                    if c.ended:
                        row["ended"] = True
                    companies.append(row)
                debtors.append({"id": debtor.id, "uuid": debtor.uuid, "number": debtor.number, "name": debtor.name,
                                "tags": list(debtor.tags), "companies": companies})
            logins = [login_to_dict(login) for login in world.logins.values() if login.environment == env.sub_domain]
            environments.append({
                "sub_domain": env.sub_domain,
                "subscription_valid": env.subscription_valid,
                "product": env.product,
                "tags": [{"name": t.name, "number": t.number, "color": t.color} for t in env.tags.values()],
                "debtors": debtors,
                "logins": logins,
            })
        data: dict[str, Any] = {"settings": {"accept_missing_domain": world.accept_missing_domain},
                                "environments": environments}
    if latency_ms:
        data["latency"] = {"ms": latency_ms, "jitter_ms": latency_jitter_ms}
    if faults:
        data["faults"] = [rule.to_dict(include_id=False) for rule in faults]
    if rest is not None and rest.clients:
        data["rest"] = rest.to_dict()
    return data


def login_to_dict(login: Any, *, include_environment: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {"username": login.username, "level": login.level, "token": login.token}
    if include_environment:
        row["environment"] = login.environment
    if login.level == ACCOUNTANT:
        row["tag_filter"] = login.tag_filter if login.tag_filter == ALL else list(login.tag_filter)
    else:
        row["company_filter"] = list(login.company_filter)
        if login.debtor is not None:
            row["debtor"] = login.debtor
    row["template"] = {svc: sorted(ops) for svc, ops in sorted(login.template.items())} or ALL
    row["deleted"] = login.deleted
    for key in ("password", "name"):  # only when set: logins without them are SOAP-only as before
        if getattr(login, key, None) is not None:
            row[key] = getattr(login, key)
    if getattr(login, "uuid", "") and login.uuid != derived_uuid("login", login.username.lower()):
        row["uuid"] = login.uuid
    return row
