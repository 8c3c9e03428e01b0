"""No token in any log record, exception message or repr, even with every logger at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from l1nda_sync.nmbrs import Credentials, NmbrsError

from .conftest import ENV, MASTER_HORECA

WRONG = "ffffeeeeddddccccbbbbaaaa99998888"


class Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def everything() -> Iterator[Everything]:
    """The root logger and zeep's/urllib3's own loggers at DEBUG, all captured."""
    handler = Everything()
    root = logging.getLogger()
    names = ("zeep", "zeep.transports", "urllib3", "urllib3.connectionpool", "l1nda_sync")
    saved = (root.level, {n: logging.getLogger(n).level for n in names})
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(saved[0])
    for name, level in saved[1].items():
        logging.getLogger(name).setLevel(level)


def test_debug_logging_through_failing_and_succeeding_probes_shows_no_token(sim, client, everything) -> None:
    import zeep.transports

    # zeep's own transport logger would dump envelopes; prove the guard works even for it
    zeep.transports.Transport().logger.debug("HTTP Post to %s:\n%s", "x",
                                             f"<Token>{MASTER_HORECA.token}</Token>")
    good = client.probe(MASTER_HORECA.creds())
    sim.admin.inject_fault("fault_9999", operation="Tags_Get", count=1)  # a retry logs too
    client.probe(MASTER_HORECA.creds(ENV), good)
    client.probe(MASTER_HORECA.creds(ENV))
    errors: list[NmbrsError] = []
    for creds in (Credentials(MASTER_HORECA.username, WRONG), Credentials(MASTER_HORECA.username, WRONG, ENV)):
        with pytest.raises(NmbrsError) as caught:
            client.probe(creds, good)
        errors.append(caught.value)
    sim.admin.inject_fault("malformed", operation="List_GetAll")
    with pytest.raises(NmbrsError) as caught:
        client.probe(MASTER_HORECA.creds(ENV), good)
    errors.append(caught.value)

    text = "\n".join(everything.lines)
    assert "AuthHeaderWithDomain" in text  # envelopes were logged (redacted), so the check means something
    assert "…b8a9" in text  # both tokens appear masked
    assert "…8888" in text
    for token in (MASTER_HORECA.token, WRONG):
        assert token not in text
        for error in errors:
            assert token not in str(error)
            assert token not in repr(error)
    assert MASTER_HORECA.token not in repr(client)
    assert MASTER_HORECA.token not in repr(MASTER_HORECA.creds(ENV))
