"""Finishing a consent for `connections finish`: the shared consent core (`l1nda_sync.consent`), which the
customer page's callback uses too; kept under this name for the CLI and its tests."""

from __future__ import annotations

from l1nda_sync.consent import Reached, abandon, exchange, finish, probe, read_callback, start_again

__all__ = ["Reached", "abandon", "exchange", "finish", "probe", "read_callback", "start_again"]
