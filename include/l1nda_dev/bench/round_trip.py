"""The simulator's own round trip: SOAP calls one at a time from a bare HTTP client (a fixed envelope on one
keep-alive connection, the answer read but not parsed).

A sweep cannot beat calls x round trip / calls in flight. Set to 50 ms, the simulator answers in about 51 to 52:
its event loop wakes up to a millisecond late (epoll waits in whole milliseconds), and it reads the request and
writes the answer around the wait. That is the simulator's time, not the engine's, so the bench reports the bound
at this measured round trip next to the bound at the set latency.
"""

from __future__ import annotations

import http.client
import statistics
import time
from urllib.parse import urlsplit

from nmbrs_sim.catalog import namespace, soap_action


def _envelope(username: str, token: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:d="{namespace("DebtorService")}"><soap:Header><d:AuthHeader><d:Username>{username}</d:Username>'
        f"<d:Token>{token}</d:Token></d:AuthHeader></soap:Header><soap:Body><d:Environment_Get/></soap:Body>"
        "</soap:Envelope>"
    ).encode()


def round_trip_ms(base_url: str, username: str, token: str, *, calls: int = 40) -> float:
    """The median wall time of `calls` sequential `Environment_Get` calls (after one to open the connection)."""
    url = urlsplit(f"{base_url}DebtorService.asmx")
    body = _envelope(username, token)
    headers = {"Content-Type": "text/xml; charset=utf-8",
               "SOAPAction": f'"{soap_action("DebtorService", "Environment_Get")}"'}
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    times: list[float] = []
    try:
        for n in range(calls + 1):
            started = time.perf_counter()
            connection.request("POST", url.path, body, headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"the simulator answered Environment_Get with HTTP {response.status}")
            if n:
                times.append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
    return statistics.median(times)
