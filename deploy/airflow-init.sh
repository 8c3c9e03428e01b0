#!/usr/bin/env bash
# One-shot set-up of Airflow's metadata database and the L1NDA registry; safe to repeat, and any failing step
# fails it (so no other Airflow service starts). One script for both deployments:
# - docker-compose.yaml's airflow-init runs it in the image (the Dockerfile copies it to /opt/l1nda/), as root,
#   with FabAuthManager: it also creates the admin user and hands the logs to AIRFLOW_UID;
# - `make airflow EXECUTOR=celery` (include/l1nda_dev/demo) runs it from the checkout with SimpleAuthManager,
#   whose users come from Airflow's configuration, so there is no user to create.
# Not the image's entrypoint: that one carries on after a failed migration or admin user.
#
# Reads: AIRFLOW__* (Airflow's own settings), L1NDA_* (the project's, checked in the last step), and
#   AIRFLOW_UID                   owner of the logs when run as root (compose)
#   NMBRS_API_POOL_SLOTS          slots of the pool nmbrs_api when it is created (default 8; existing slots stay)
#   _AIRFLOW_WWW_USER_USERNAME/_AIRFLOW_WWW_USER_PASSWORD   the admin user (FabAuthManager only)
set -euo pipefail

logs="${AIRFLOW__LOGGING__BASE_LOG_FOLDER:-${AIRFLOW_HOME:-/opt/airflow}/logs}"
give_logs_away() {
  if [ "$(id -u)" -eq 0 ] && [ -n "${AIRFLOW_UID:-}" ]; then
    chown -R "${AIRFLOW_UID}:0" "${logs}"
  fi
}
mkdir -p "${logs}"
give_logs_away

for address in "${L1NDA_OPS_RECIPIENTS:-}" "${L1NDA_MAIL_FROM:-}" "${L1NDA_WEB_BASE_URL:-}"; do
  case "${address}" in
    *.invalid*) echo "set L1NDA_OPS_RECIPIENTS, L1NDA_MAIL_FROM and L1NDA_WEB_BASE_URL in .env" \
                  "(not ${address})" >&2; exit 1;;
  esac
done

echo "Airflow: migrate the metadata database, then check that no migration is left"
airflow db migrate
airflow db check-migrations --migration-wait-timeout 0

case "${AIRFLOW__CORE__AUTH_MANAGER:-}" in
  *FabAuthManager)
    user="${_AIRFLOW_WWW_USER_USERNAME:?set _AIRFLOW_WWW_USER_USERNAME}"
    echo "Airflow: admin user ${user} (created when missing), then check it exists"
    airflow users create --role Admin --username "${user}" \
      --password "${_AIRFLOW_WWW_USER_PASSWORD:?set _AIRFLOW_WWW_USER_PASSWORD}" --firstname Airflow \
      --lastname Admin --email "${user}@example.com"
    airflow users list --output plain | awk -v user="${user}" \
      '$2 == user { found = 1 } END { if (!found) { print "admin user " user " is missing" > "/dev/stderr"; exit 1 } }'
    ;;
  *) echo "Airflow: no admin user to create (${AIRFLOW__CORE__AUTH_MANAGER:-the default auth manager} keeps its own)";;
esac

slots="${NMBRS_API_POOL_SLOTS:-8}"
echo "Airflow: pool nmbrs_api (created with ${slots} slots when missing; existing slots stay)"
if pool=$(airflow pools get nmbrs_api 2>&1); then
  echo "pool nmbrs_api exists: ${pool}"
elif grep -q "does not exist" <<<"${pool}"; then
  airflow pools set nmbrs_api "${slots}" "Nmbrs API calls"
else
  echo "${pool}" >&2
  exit 1
fi

echo "L1NDA registry: apply pending migrations"
l1nda-sync db upgrade
echo "L1NDA settings (secrets hidden); a bad value stops here"
l1nda-sync settings
give_logs_away
