# The L1NDA Nmbrs sync image: the official Airflow image, extended the official way. The base image already holds
# Airflow, its providers (the image's default extras: celery, fab, postgres, redis, http, ...) and their
# dependencies, installed under Airflow's constraints for this version, which the image keeps at
# /home/airflow/constraints.txt. On top go only what it lacks: the project (l1nda_sync, nmbrs_sim, the l1nda-sync
# and nmbrs-sim commands) and the project's own needs (requirements-image.txt: zeep and what zeep needs), with
# "apache-airflow==${AIRFLOW_VERSION}" and the same constraints, so pip cannot move Airflow or any package the
# image ships; `pip check` then fails the build on any conflict. docker-compose.yaml builds it (`build: .`).
# Keep the tag equal to the apache-airflow pin in requirements.txt (tests/test_deployment.py checks it).
FROM apache/airflow:3.3.2-python3.11

# The constraints the base image was built with (the official build downloads
# constraints-${AIRFLOW_VERSION}/constraints-3.11.txt from Airflow's repository and keeps it here); an equal file
# or that URL can be passed with --build-arg AIRFLOW_CONSTRAINTS=...
ARG AIRFLOW_CONSTRAINTS=/home/airflow/constraints.txt

# 1. The project's own needs, as the image's default user (airflow); rebuilt only when requirements-image.txt
#    changes. AIRFLOW_VERSION is set by the base image.
COPY requirements-image.txt /requirements-image.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /requirements-image.txt \
        --constraint "${AIRFLOW_CONSTRAINTS}" \
    && pip check

# 2. The project as a regular, non-editable package, its dependencies resolved under the same constraints (all
#    of them are already installed by now, so nothing moves). pyproject.toml names README.md.
COPY --chown=airflow:0 pyproject.toml README.md /tmp/l1nda-src/
COPY --chown=airflow:0 include/ /tmp/l1nda-src/include/
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /requirements-image.txt /tmp/l1nda-src \
        --constraint "${AIRFLOW_CONSTRAINTS}" \
    && pip check \
    && rm -rf /tmp/l1nda-src

# 3. The one-shot set-up docker-compose.yaml's airflow-init runs (the script `make airflow EXECUTOR=celery` runs too),
#    then DAGs and plugins last: they change most often.
COPY --chown=airflow:0 deploy/airflow-init.sh /opt/l1nda/airflow-init.sh
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
