# The L1NDA Nmbrs sync image: the official Airflow image + the exact runtime pins + the project's packages,
# DAGs and plugins. docker-compose.yaml builds it (`build: .`) for every Airflow service and the trial simulator.
# Keep the tag equal to the apache-airflow pin in requirements.txt (tests/test_deployment.py checks it).
FROM apache/airflow:3.3.2-python3.11

# 1. The exact pins, as the image's default user (airflow). This layer is rebuilt only when requirements.txt
#    changes. "apache-airflow==${AIRFLOW_VERSION}" (set by the base image) keeps pip from moving Airflow itself.
#    `pip check` fails the build when a pin clashes with a provider the base image ships (celery, fab, redis,
#    postgres, ...); `docker compose build --build-arg PIP_CHECK=0` turns that into pip's warning only.
ARG PIP_CHECK=1
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /requirements.txt \
    && if [ "${PIP_CHECK}" = "1" ]; then pip check; fi

# 2. The project (l1nda_sync, nmbrs_sim and the l1nda-sync / nmbrs-sim commands) as a regular, non-editable
#    package. Its dependencies are all pinned above, hence --no-deps. pyproject.toml names README.md.
COPY --chown=airflow:0 pyproject.toml README.md /tmp/l1nda-src/
COPY --chown=airflow:0 include/ /tmp/l1nda-src/include/
RUN pip install --no-cache-dir --no-deps /tmp/l1nda-src && rm -rf /tmp/l1nda-src

# 3. DAGs and plugins last: they change most often.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
