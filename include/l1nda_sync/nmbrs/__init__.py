"""The Nmbrs SOAP v3 client: check a token, list what it reaches, classify every fault.

`get_client(settings).probe(Credentials(username, token, domain), previous)` is what the engine and the CLI use;
errors are the hierarchy in `l1nda_sync.nmbrs.errors`. Calls per token for each case: `l1nda_sync.nmbrs.probe`.
"""

from l1nda_sync.nmbrs.client import NmbrsClient, get_client
from l1nda_sync.nmbrs.errors import (
    CredentialInvalid,
    DataNotAllowed,
    MalformedAnswer,
    NmbrsError,
    NoSubscription,
    OperationNotAllowed,
    TransientError,
    UnknownNmbrsError,
)
from l1nda_sync.nmbrs.records import Company, Credentials, Debtor, DebtorTag, Environment, Probe

__all__ = [
    "Company",
    "CredentialInvalid",
    "Credentials",
    "DataNotAllowed",
    "Debtor",
    "DebtorTag",
    "Environment",
    "MalformedAnswer",
    "NmbrsClient",
    "NmbrsError",
    "NoSubscription",
    "OperationNotAllowed",
    "Probe",
    "TransientError",
    "UnknownNmbrsError",
    "get_client",
]
