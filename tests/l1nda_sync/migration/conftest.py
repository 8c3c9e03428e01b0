"""The stories' fixtures (the simulator, SMTP, the REST story world) for every story in this folder."""

from tests.l1nda_sync.migration.test_cutover_story import sim, smtp, world  # noqa: F401 - fixtures
