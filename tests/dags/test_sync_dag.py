"""Real Airflow runs (`dag.test()`) of the sync DAG and the outbox DAG against the simulator, PostgreSQL and SMTP."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from tests.dags.conftest import OPS, DagWorld, load_dag
from tests.l1nda_sync.engine.story_world import LOGINS

pytestmark = pytest.mark.slow


def _task_states(run) -> dict[str, str]:
    return {ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": ti.state
            for ti in run.get_task_instances()}


def test_scheduled_run_checks_due_tokens_and_activates_links(dag_world: DagWorld) -> None:
    dag_world.add_token("horeca")
    dag_world.add_token("vandijk")
    dag_world.request(50101, 50301, 50701)
    run = load_dag("nmbrs_token_sync").test()
    assert run.state == "success", _task_states(run)
    assert dag_world.state("horeca") == "active"
    assert dag_world.state("vandijk") == "active"
    links = dict(dag_world.query("SELECT company_id, state FROM links"))
    assert links == {50101: "active", 50301: "active", 50701: "pending"}
    summary = dag_world.query("SELECT state, summary->>'checked' FROM runs")
    assert summary == [("success", "2")]
    states = _task_states(run)
    assert states["check[0]"] == "success"
    assert states["close_report"] == "success"


def test_revocation_mails_ops_and_the_customer(dag_world: DagWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L1NDA_REVOKE_MIN_SPACING", "0")  # confirm at the next run: no ten-minute wait here
    dag_world.add_token("horeca")
    dag_world.add_token("linde")  # a healthy bystander: one token alone cannot tell a revocation from an outage
    dag = load_dag("nmbrs_token_sync")
    assert dag.test().state == "success"
    dag_world.sim.admin.reset_token(LOGINS["horeca"][1])
    for _ in range(2):
        run = dag.test(run_conf={"token_ids": [dag_world.ids["horeca"]]})
        assert run.state == "success", _task_states(run)
    assert dag_world.state("horeca") == "revoked"
    recipients = sorted(r for rcpts, _msg in dag_world.mail.received for r in rcpts)
    assert recipients == sorted([OPS, "contact-horeca@customer.example"])
    assert all(b"revoked" in msg.lower() for _r, msg in dag_world.mail.received)
    summaries = [r[0] for r in dag_world.query("SELECT summary FROM runs ORDER BY id")]
    assert sum(s["mails_sent"] for s in summaries) == 2
    assert sum(s["problems_opened"] for s in summaries) >= 1
    assert summaries[-1]["state_changes"] == [
        {"token_id": dag_world.ids["horeca"], "label": "horeca", "kind": "soap_token", "from": "invalid",
         "to": "revoked"}]


def test_unknown_token_id_fails_the_first_task_naming_the_field(dag_world: DagWorld, capfd) -> None:
    dag_world.add_token("horeca")
    run = load_dag("nmbrs_token_sync").test(run_conf={"token_ids": [424242]})
    assert run.state == "failed"
    states = _task_states(run)
    assert states["plan"] == "failed"
    assert "token_ids: no token with id 424242" in capfd.readouterr().out
    plan = next(ti for ti in run.get_task_instances() if ti.task_id == "plan")
    assert plan.try_number == 1  # bad input is not retried
    assert dag_world.state("horeca") == "new"  # nothing was checked
    # The run's failure callback mailed operations, once.
    assert [rcpts for rcpts, _msg in dag_world.mail.received] == [[OPS]]
    assert b"nmbrs_token_sync run failed" in dag_world.mail.received[0][1]


def test_a_worker_without_the_registry_key_fails_the_check_once_and_mails_the_setting(
        dag_world: DagWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    dag_world.add_token("horeca")
    dag_world.add_token("vandijk")
    monkeypatch.setenv("L1NDA_FERNET_KEYS", Fernet.generate_key().decode("ascii"))  # not this registry's key
    run = load_dag("nmbrs_token_sync").test()
    assert run.state == "failed"
    check = [ti for ti in run.get_task_instances() if ti.task_id == "check"]
    assert [ti.state for ti in check] == ["failed"]
    assert check[0].try_number == 1, "a missing key does not come back by retrying"
    assert {dag_world.state(label) for label in ("horeca", "vandijk")} == {"new"}, "no token moved"
    assert dag_world.query("SELECT count(*) FROM checks") == [(0,)], "nothing stored, no 'unknown' outcome"
    [(rcpts, message)] = dag_world.mail.received  # one mail, to operations, naming the setting and the tokens
    assert rcpts == [OPS]
    mail = email.message_from_bytes(message, policy=email.policy.default)
    text = mail.get_body(("plain",)).get_content()
    assert "L1NDA_FERNET_KEYS" in text, text
    assert f"{dag_world.ids['horeca']}, {dag_world.ids['vandijk']}" in text


def test_dry_run_writes_nothing(dag_world: DagWorld) -> None:
    dag_world.add_token("horeca")
    dag_world.request(50101)
    run = load_dag("nmbrs_token_sync").test(run_conf={"dry_run": True})
    assert run.state == "success", _task_states(run)
    assert dag_world.state("horeca") == "new"
    assert dag_world.query("SELECT state FROM links") == [("pending",)]
    assert dag_world.query("SELECT count(*) FROM runs") == [(0,)]
    assert dag_world.query("SELECT count(*) FROM checks") == [(0,)]


def test_send_mails_false_keeps_mails_for_the_outbox_dag(dag_world: DagWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L1NDA_REVOKE_MIN_SPACING", "0")
    dag_world.add_token("horeca")
    dag_world.add_token("linde")  # a healthy bystander
    dag = load_dag("nmbrs_token_sync")
    dag_world.sim.admin.delete_login(LOGINS["horeca"][1])
    for _ in range(2):
        assert dag.test(run_conf={"send_mails": False, "force": True}).state == "success"
    assert dag_world.state("horeca") == "rejected"  # it never worked: the token we received is refused
    assert dag_world.mail.received == []
    pending = dag_world.query("SELECT count(*) FROM outbox WHERE state = 'pending'")[0][0]
    assert pending >= 2

    run = load_dag("nmbrs_alert_outbox").test()
    assert run.state == "success", _task_states(run)
    assert len(dag_world.mail.received) == pending
    assert dag_world.query("SELECT count(*) FROM outbox WHERE state <> 'sent'") == [(0,)]


def test_no_plaintext_token_in_logs_xcom_conf_or_any_table(dag_world: DagWorld, capfd, caplog) -> None:
    for label in ("horeca", "vandijk"):
        dag_world.add_token(label)
    dag_world.sim.admin.reset_token(LOGINS["vandijk"][1])  # a failing token: its error path is logged too
    dag = load_dag("nmbrs_token_sync")
    assert dag.test().state == "success"
    assert dag.test(run_conf={"force": True}).state == "success"
    secrets = [LOGINS[label][2] for label in ("horeca", "vandijk")]
    out, err = capfd.readouterr()
    texts = {"stdout": out, "stderr": err, "log records": caplog.text}
    for path in Path(dag_world.airflow_home).rglob("*"):  # metadata DB (XCom, conf, rendered fields) and logs
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
    import sqlite3

    meta = sqlite3.connect(Path(dag_world.airflow_home) / "airflow.db")
    try:
        xcom = meta.execute("SELECT dag_id, task_id, value FROM xcom").fetchall()
        runs = meta.execute("SELECT run_id, conf FROM dag_run").fetchall()
        rendered = meta.execute("SELECT rendered_fields FROM rendered_task_instance_fields").fetchall()
    finally:
        meta.close()
    assert any(task == "plan" for _d, task, _v in xcom), "the search must see the XCom the run wrote"
    assert runs
    texts.update({"xcom": repr(xcom), "dag_run": repr(runs), "rendered fields": repr(rendered)})
    dump = dag_world.query(
        "SELECT string_agg(t::text, E'\\n') FROM (SELECT * FROM tokens) t")[0][0]
    texts["tokens table"] = dump or ""
    for table in ("checks", "token_events", "outbox", "runs", "problems", "reach_events", "webhook_outbox"):
        texts[table] = str(dag_world.query(f"SELECT * FROM {table}"))
    assert len(texts) > 4
    for secret in secrets:
        leaks = [where for where, text in texts.items() if secret in text]
        assert leaks == [], f"token ...{secret[-4:]} found in {leaks}"


def test_webhook_events_reach_the_platform_when_l1nda_api_is_configured(
        dag_world: DagWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from tests.l1nda_sync.webhook.test_webhook import Receiver

    receiver = Receiver().start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_L1NDA_API", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": receiver.port, "schema": "http"}))
        dag_world.add_token("horeca")
        dag_world.request(50101)
        run = load_dag("nmbrs_token_sync").test()
        assert run.state == "success", _task_states(run)
    finally:
        receiver.stop()
    events = [(body["event"], body["data"]["to"]) for _h, body in receiver.posts]
    assert events == [("token.state_changed", "active"), ("link.state_changed", "active")]
    assert dag_world.query("SELECT count(*) FROM webhook_outbox WHERE state = 'sent'") == [(2,)]


def test_cutover_preview_at_logs_the_plan_and_writes_nothing(dag_world: DagWorld, capfd, caplog) -> None:
    dag_world.add_token("horeca")
    dag_world.add_token("vandijk")
    dag_world.request(50101, 50301)
    dag = load_dag("nmbrs_token_sync")
    assert dag.test().state == "success"
    links = dag_world.query("SELECT id, company_id, state, reason, token_id FROM links ORDER BY id")
    counts = dag_world.query("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM checks), "
                             "(SELECT count(*) FROM link_events), (SELECT count(*) FROM problems)")
    dag_world.sim.admin.clear_calls()
    mails = len(dag_world.mail.received)
    capfd.readouterr()
    run = dag.test(run_conf={"cutover_preview_at": "soap_end"})
    assert run.state == "success", _task_states(run)
    captured = capfd.readouterr()
    out = captured.out + captured.err + caplog.text  # the task's log, wherever this Airflow sends it
    assert "cutover preview, nothing written" in out
    assert "the cutover retires 2 SOAP token(s)" in out
    assert "suspends 2 (soap_ended)" in out
    assert dag_world.state("horeca") == "active"  # previewed, not retired
    assert dag_world.state("vandijk") == "active"
    assert dag_world.query("SELECT id, company_id, state, reason, token_id FROM links ORDER BY id") == links
    assert dag_world.query("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM checks), "
                           "(SELECT count(*) FROM link_events), (SELECT count(*) FROM problems)") == counts
    assert dag_world.sim.admin.calls() == []  # no Nmbrs call at all
    assert len(dag_world.mail.received) == mails

    bad = dag.test(run_conf={"cutover_preview_at": "March"})
    assert bad.state == "failed"
    assert _task_states(bad)["plan"] == "failed"
    captured = capfd.readouterr()
    assert "cutover_preview_at: 'March' is not a date" in captured.out + captured.err + caplog.text
