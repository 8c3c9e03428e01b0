"""What the simulator serves: services, operations, their SOAP header and parameters, namespaces and actions."""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE_BASE = "https://api.nmbrs.nl/soap/v3/"
PATH_PREFIX = "/soap/v3/"

AUTH_HEADER = "AuthHeader"
AUTH_HEADER_WITH_DOMAIN = "AuthHeaderWithDomain"

PERIODS = ("None", "Month", "Week4", "Month6", "Year")


@dataclass(frozen=True, slots=True)
class Operation:
    """One SOAP operation: its service, name, SOAPAction, auth header and Int32 parameters."""

    service: str
    name: str
    header: str
    int_params: tuple[str, ...] = ()

    @property
    def soap_action(self) -> str:
        return soap_action(self.service, self.name)


def namespace(service: str) -> str:
    return NAMESPACE_BASE + service


def soap_action(service: str, operation: str) -> str:
    return f"{namespace(service)}/{operation}"


_OPERATIONS = (
    Operation("DebtorService", "Environment_Get", AUTH_HEADER),
    Operation("DebtorService", "List_GetAll", AUTH_HEADER_WITH_DOMAIN),
    Operation("DebtorService", "Debtor_Get", AUTH_HEADER_WITH_DOMAIN, ("DebtorId",)),
    Operation("DebtorService", "Tags_Get", AUTH_HEADER_WITH_DOMAIN, ("DebtorId",)),
    Operation("DebtorService", "Debtor_IsOwner", AUTH_HEADER_WITH_DOMAIN),
    Operation("CompanyService", "List_GetAll", AUTH_HEADER_WITH_DOMAIN),
    Operation("CompanyService", "List_GetByDebtor", AUTH_HEADER_WITH_DOMAIN, ("DebtorId",)),
)

SERVICES: dict[str, dict[str, Operation]] = {}
for _op in _OPERATIONS:
    SERVICES.setdefault(_op.service, {})[_op.name] = _op

ACTIONS: dict[str, Operation] = {op.soap_action: op for op in _OPERATIONS}


def operation(service: str, name: str) -> Operation | None:
    return SERVICES.get(service, {}).get(name)


def service_for_path(path: str) -> str | None:
    """'/soap/v3/DebtorService.asmx' -> 'DebtorService' (ASMX paths are case-insensitive)."""
    if not path.lower().startswith(PATH_PREFIX):
        return None
    leaf = path[len(PATH_PREFIX):]
    if not leaf.lower().endswith(".asmx"):
        return None
    name = leaf[: -len(".asmx")]
    for service in SERVICES:
        if service.lower() == name.lower():
            return service
    return None
