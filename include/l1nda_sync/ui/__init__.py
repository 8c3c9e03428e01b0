"""The operators' token-health page inside the Airflow UI: an Airflow 3 plugin (`plugin.py`) serving a FastAPI
app (`app.create_app`) behind Airflow's own login. Read-only pages over the registry, and a few actions done as
the logged-in user (a sync run through Airflow's public API, mute, resend, invite)."""
