# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv test test-celery lint fmt demo bench airflow browser screenshots pins clean

help:
	@echo "make test    ruff, mypy, then the whole pytest suite (embedded PostgreSQL unless L1NDA_TEST_DATABASE_URL is set)"
	@echo "make test-celery  the opt-in Celery stack test (-m celery, about 5 min; .ci/run runs it after make test)"
	@echo "make demo    the end-to-end story against the simulator, on embedded defaults"
	@echo "make bench   benchmarks that print numbers (BENCH_ARGS=\"--tokens 20000\": the scaling run; --help for more)"
	@echo "make airflow the demo's world with the Airflow UI on localhost:8080 (login admin / l1nda-demo)"
	@echo "             EXECUTOR=celery: PostgreSQL metadata, CeleryExecutor, two Celery workers (docs/celery-local.md)"
	@echo "make browser install Debian's chromium and chromium-driver (apt, as root) for the browser tests"
	@echo "make screenshots  run the browser tests (customer page, Airflow UI) and copy README's screenshots to docs/screenshots/"
	@echo "make lint    ruff and mypy (no tests);  make fmt: ruff --fix"
	@echo "make pins    refresh requirements*.txt after changing a top-level dependency"
	@echo "make clean   remove .venv and var/"
	@echo "make venv    create .venv and install the exact pins (done by the others when needed)"

venv: $(STAMP)

# Reinstall only when a pin file or the package metadata changed.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python tools/prune_venv.py requirements.txt requirements-dev.txt
	$(BIN)/python -m pip check
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff check --fix .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The opt-in Celery stack test (docs/celery-local.md): compose's shape on one machine, a worker killed mid-run.
test-celery: $(STAMP)
	$(BIN)/python -m pytest -m celery -p no:randomly tests/l1nda_dev/demo/test_celery_stack.py

demo: $(STAMP)
	$(BIN)/python -m l1nda_dev.demo

bench: $(STAMP)
	$(BIN)/python -m l1nda_dev.bench $(BENCH_ARGS)

# EXECUTOR=celery: compose's shape (PostgreSQL metadata, CeleryExecutor, two workers); see docs/celery-local.md.
EXECUTOR ?= local
airflow: $(STAMP)
	$(BIN)/python -m l1nda_dev.demo --airflow --executor $(EXECUTOR)

# The browser tests (tests/l1nda_sync/web/browser/) drive Debian's Chromium through its chromedriver; selenium is
# given both paths, so nothing is downloaded. Without them `make test` skips those tests and says why (CI fails).
# No recommends (printer tools, udev, ...): a headless browser needs only the packages and one font family.
CHROMIUM_PACKAGES := chromium chromium-driver fonts-liberation
CHROMIUM          := /usr/bin/chromium
CHROMEDRIVER      := /usr/bin/chromedriver
browser:
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then \
	  echo "browser tests: $$($(CHROMIUM) --version 2>/dev/null) and $(CHROMEDRIVER) are installed"; \
	elif [ "$$(id -u)" -ne 0 ]; then \
	  echo "make browser installs $(CHROMIUM_PACKAGES) with apt-get: run it as root (sudo make browser)" >&2; exit 1; \
	else \
	  echo "browser tests: apt-get install $(CHROMIUM_PACKAGES)"; log=$$(mktemp); \
	  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	         apt-get install -y -q --no-install-recommends $(CHROMIUM_PACKAGES); } >"$$log" 2>&1; then \
	    tail -n 40 "$$log" >&2; rm -f "$$log"; echo "make browser: apt-get failed (above)" >&2; exit 1; \
	  fi; rm -f "$$log"; \
	  test -x $(CHROMIUM) && test -x $(CHROMEDRIVER) || \
	    { echo "make browser: apt-get succeeded but $(CHROMIUM) or $(CHROMEDRIVER) is missing" >&2; exit 1; }; \
	  echo "browser tests: installed $$($(CHROMIUM) --version 2>/dev/null)"; \
	fi

# The token health page inside `make airflow`'s Airflow UI (tests/l1nda_sync/ui/browser/, about 4 minutes).
# The pages README.md shows: var/screenshots/<test>-<step>.png (saved by the browser tests) -> docs/screenshots/.
SHOTS := test_rest_invitation_mail_to_consent_to_active_links-invitation:invite-rest \
         test_rest_invitation_mail_to_consent_to_active_links-nmbrs-consent:nmbrs-consent \
         test_rest_invitation_mail_to_consent_to_active_links-result:result-rest \
         test_token_hand_over_from_the_mail_stores_the_token_and_shows_its_reach-form:invite-token \
         test_token_hand_over_from_the_mail_stores_the_token_and_shows_its_reach-result:result-token \
         test_rest_invitation_mail_to_consent_to_active_links-used:error-used \
         test_denied_consent_is_a_clear_page_in_the_contacts_language_and_stores_nothing-denied-nl:error-denied-nl \
         test_a_token_nmbrs_refuses_is_a_clear_page_and_replaces_nothing-en-token-refused-en:error-token-refused \
         test_an_expired_invitation-en-expired-en:error-expired \
         test_an_unknown_invitation-unknown:error-unknown \
         test_operator_opens_token_health_from_airflows_nav_and_rechecks_a_credential-overview:airflow-ui-overview \
         test_operator_opens_token_health_from_airflows_nav_and_rechecks_a_credential-credentials:airflow-ui-credentials \
         test_operator_opens_token_health_from_airflows_nav_and_rechecks_a_credential-credential-suspended:airflow-ui-credential-suspended \
         test_operator_opens_token_health_from_airflows_nav_and_rechecks_a_credential-recheck-flash:airflow-ui-recheck-flash
screenshots: $(STAMP) browser
	rm -f var/screenshots/*.png
	$(BIN)/python -m pytest -q -p no:randomly tests/l1nda_sync/web/browser tests/l1nda_sync/ui/browser
	mkdir -p docs/screenshots
	@for pair in $(SHOTS); do cp "var/screenshots/$${pair%%:*}.png" "docs/screenshots/$${pair##*:}.png" || exit 1; done
	@echo "copied $(words $(SHOTS)) screenshots to docs/screenshots/"

# `make pins` (needs the package index): the constraints the image's install step is tested with, then the
# .venv's runtime pins under them. Airflow's own constraints file for the version (constraints-X.Y.Z branch of
# Airflow's repository) cannot be downloaded here, so the first file stands in for it: the same resolution
# (highest versions) of the official image's default extras, as the index stood the day after the release.
AIRFLOW_VERSION  := 3.3.2
AIRFLOW_PYTHON   := 3.11
# AIRFLOW_EXTRAS of Airflow's official Dockerfile: what apache/airflow:$(AIRFLOW_VERSION) ships.
AIRFLOW_EXTRAS   := aiobotocore,amazon,async,celery,cncf-kubernetes,common-io,common-messaging,docker,elasticsearch,fab,ftp,git,google,google-auth,graphviz,grpc,hashicorp,http,ldap,microsoft-azure,mysql,odbc,openlineage,pandas,postgres,redis,sendgrid,sftp,slack,snowflake,ssh,statsd,uv
# apache-airflow $(AIRFLOW_VERSION) was uploaded to PyPI on 2026-09-17.
AIRFLOW_RELEASED := 2026-09-18T00:00:00Z
CONSTRAINTS      := constraints/constraints-$(AIRFLOW_VERSION)-python$(AIRFLOW_PYTHON).txt
UV_COMPILE        = $(BIN)/uv pip compile --quiet --no-header --no-annotate --python-version $(AIRFLOW_PYTHON) \
                    --python-platform x86_64-manylinux_2_28

pins: $(STAMP)
	mkdir -p var/pins constraints
	echo "apache-airflow[$(AIRFLOW_EXTRAS)]==$(AIRFLOW_VERSION)" > var/pins/image.in
	$(UV_COMPILE) --exclude-newer $(AIRFLOW_RELEASED) var/pins/image.in requirements-image.txt -o var/pins/constraints.txt
	{ echo "# Stand-in for Airflow's constraints-$(AIRFLOW_VERSION)/constraints-$(AIRFLOW_PYTHON).txt (generated by \`make pins\`; do not edit)."; \
	  echo "# The highest versions that resolve together for apache-airflow[extras]==$(AIRFLOW_VERSION) plus requirements-image.txt"; \
	  echo "# on CPython $(AIRFLOW_PYTHON), linux x86_64, from the package index as it stood at $(AIRFLOW_RELEASED)."; \
	  echo "# The image itself installs under the file it was built with (/home/airflow/constraints.txt)."; \
	  echo "# airflow: $(AIRFLOW_VERSION)"; \
	  echo "# python: $(AIRFLOW_PYTHON)"; \
	  echo "# extras: $(AIRFLOW_EXTRAS)"; \
	  echo "# index-as-of: $(AIRFLOW_RELEASED)"; \
	  cat var/pins/constraints.txt; } > $(CONSTRAINTS)
	$(UV_COMPILE) --constraint $(CONSTRAINTS) pyproject.toml -o var/pins/requirements.txt
	{ echo "# Runtime pins of the development .venv: apache-airflow $(AIRFLOW_VERSION) with the providers the project uses,"; \
	  echo "# at the versions of $(CONSTRAINTS), so .venv runs what the image runs."; \
	  echo "# Generated by \`make pins\` from pyproject.toml; do not edit by hand."; \
	  cat var/pins/requirements.txt; } > requirements.txt
	git diff --stat -- $(CONSTRAINTS) requirements.txt
	@echo "review the diff; the next make reinstalls .venv; keep requirements-image.txt's pins equal to $(CONSTRAINTS)"

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
