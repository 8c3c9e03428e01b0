"""The webhook tests run in the engine's story world (simulator over HTTP, a fresh registry)."""

from tests.l1nda_sync.engine.conftest import sim, world  # noqa: F401 - fixtures
