"""Nmbrs' error codes and the exception that carries one to the SOAP fault writer."""

from __future__ import annotations

FAULT_TEXTS: dict[int, str] = {
    1001: "Invalid Authentication",
    1002: "Unauthorized Access",
    1003: "Unauthorized Access",
    1004: "Disabled, no valid subscription",
    1006: "Generic Login Security Failure",
    2003: "Unauthorized Access",
    2004: "Unauthorized Access",
    2009: "Unauthorized Access",
    9999: "Unknown",
}

SERVER_PREFIX = "Server was unable to process request. ---> "
READ_PREFIX = "Server was unable to read request. ---> "
NO_ACTION_TEXT = "Unable to handle request without a valid action parameter. Please supply a valid soap action."


class NmbrsFault(Exception):
    """An error Nmbrs reports as a soap:Server fault 'Server was unable to process request. ---> NNNN: Text'."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.text = FAULT_TEXTS[code]
        super().__init__(f"{code}: {self.text}")

    @property
    def faultstring(self) -> str:
        return f"{SERVER_PREFIX}{self.code}: {self.text}"


class ClientFault(Exception):
    """A request the server cannot read (soap:Client / soap:Sender), like ASMX rejects it."""

    def __init__(self, faultstring: str) -> None:
        self.faultstring = faultstring
        super().__init__(faultstring)
