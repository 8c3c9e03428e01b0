"""The stories' fixtures (the simulator, SMTP, the REST story world; the customer page's web_stack) for every story
in this folder."""

from tests.l1nda_sync.migration.test_cutover_story import sim, smtp, world  # noqa: F401 - fixtures
from tests.l1nda_sync.web.conftest import _quiet_smtp_server_log, web_stack  # noqa: F401 - fixtures
