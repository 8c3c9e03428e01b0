"""The bodies of the DAGs' tasks. DAG files only wire these together; everything here is plain Python.

Only ids, counts and short texts go in and out (they travel as XCom); tokens are decrypted inside the
check step, in memory, one at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from l1nda_sync.settings import Settings

log = logging.getLogger(__name__)


class ParamError(ValueError):
    """A trigger parameter is wrong; the message names it and says what to do."""


KNOWN_PARAMS = ("token_ids", "force", "dry_run", "notify")
TOKEN_ID_MAX = 2**31 - 1


def parse_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the trigger form (the UI validates types too; runs triggered from the API or CLI may not).

    Every problem is a ParamError naming the field: an unknown key (a misspelt `tokenids` would otherwise be
    ignored and the run would check every due token), a token id that is not a whole number in ASCII digits
    ('²' passes str.isdigit but is no id) or out of range, a flag that is not true or false.
    """
    unknown = sorted(str(k) for k in params if k not in KNOWN_PARAMS)
    if unknown:
        raise ParamError(f"{', '.join(unknown)}: not a parameter of this DAG; the known ones are "
                         f"{', '.join(KNOWN_PARAMS)} (check the spelling in the run's conf)")
    raw_ids = params.get("token_ids") or []
    if not isinstance(raw_ids, list | tuple):
        raise ParamError(f"token_ids: expected a list of token ids, got {type(raw_ids).__name__}")
    ids: list[int] = []
    for value in raw_ids:
        text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else None
        if text is None or not text.isascii() or not text.isdigit():
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "…"
            raise ParamError(f"token_ids: {shown} is not a token id (a positive whole number, e.g. 42)")
        number = int(text)
        if not 1 <= number <= TOKEN_ID_MAX:
            raise ParamError(f"token_ids: {text[:20]} is out of range; a token id is from 1 to {TOKEN_ID_MAX}")
        ids.append(number)
    flags = {}
    for name, default in (("force", False), ("dry_run", False), ("notify", True)):
        value = params.get(name, default)
        if value is None:
            value = default
        if not isinstance(value, bool):
            raise ParamError(f"{name}: expected true or false, got {value!r}")
        flags[name] = value
    return {"token_ids": sorted(set(ids)), **flags}


def build_engine(settings: Settings | None = None) -> Any:
    from l1nda_sync.engine.sync import SyncEngine
    from l1nda_sync.registry.schema import require_current
    from l1nda_sync.webhook.hooks import sync_hooks

    settings = settings or Settings.load()
    url = settings.require_database_url()
    engine = SyncEngine(url, settings=settings, hooks=sync_hooks(settings))
    conn = engine.connect()
    try:
        require_current(conn)
    finally:
        conn.close()
    return engine


def _fail_without_retry(exc: Exception) -> Exception:
    """Bad input does not get better by retrying: fail the task at once (inside Airflow) with the message."""
    try:
        from airflow.sdk.exceptions import AirflowFailException
    except ImportError:  # pragma: no cover - outside Airflow
        return exc
    return AirflowFailException(str(exc))


def plan(params: Mapping[str, Any], dag_run_id: str | None) -> dict[str, Any]:
    """First task: validate params, claim due tokens, cut batches. A dry run does all its work here."""
    from l1nda_sync.engine.planning import PlanError
    from l1nda_sync.registry.schema import SchemaError
    from l1nda_sync.settings import SettingsError

    try:
        p = parse_params(params)
        engine = build_engine()
        return _plan(engine, p, dag_run_id)
    except (ParamError, PlanError, SchemaError, SettingsError) as exc:
        raise _fail_without_retry(exc) from None


def _plan(engine: Any, p: Mapping[str, Any], dag_run_id: str | None) -> dict[str, Any]:
    if p["dry_run"]:
        report = engine.run_once(token_ids=p["token_ids"], force=p["force"], dry_run=True)
        log.info("dry run, nothing written:\n%s", report.table())
        for change in report.state_changes:
            log.info("would move token %(token_id)s (%(label)s) from %(from)s to %(to)s", change)
        for change in report.link_changes:
            log.info("would move link %(link_id)s from %(from)s to %(to)s (token %(token)s, %(reason)s)", change)
        return {"run_id": None, "batches": [], "dry_run": True, "notify": False, "report": report.counts()}
    result = engine.plan(token_ids=p["token_ids"], force=p["force"], dag_run_id=dag_run_id)
    log.info("run %s: %d token(s) due in %d batch(es)", result.run_id, len(result.token_ids), len(result.batches))
    return {
        "run_id": result.run_id,
        "batches": [list(b) for b in result.batches],
        "dry_run": False,
        "notify": p["notify"],
    }


def batch_kwargs(planned: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One mapped check task per batch (none for a dry run, whose plan did all the work)."""
    return [{"sync_run": planned["run_id"], "batch": list(b)} for b in planned.get("batches", [])]


def check(run_id: int | None, batch: Sequence[int]) -> dict[str, int]:
    engine = build_engine()
    counts = engine.check_batch(run_id, list(batch))
    log.info("batch of %d token(s): %s", len(batch), counts)
    return counts


def finish(planned: Mapping[str, Any]) -> dict[str, Any]:
    if planned.get("dry_run"):
        return dict(planned.get("report") or {})
    engine = build_engine()
    report = engine.finish(planned["run_id"])
    log.info("\n%s", report.table())
    if report.apply_errors:
        # Every other token was applied and the links reconciled; fail the task so the run is retried and,
        # if the fault stays, operations get the failed-run mail.
        raise RuntimeError(f"{report.apply_errors} check(s) could not be applied and stay pending; see the log")
    # XCom carries counts; the per-token and per-link lists are stored on the run (runs.summary).
    return report.counts()


def notify(planned: Mapping[str, Any]) -> dict[str, int]:
    """Resolve quiet problems, send reminders, and drain the outbox (unless the run said notify=false)."""
    if planned.get("dry_run"):
        return {"sent": 0}
    from l1nda_sync.alerts.outbox import drain
    from l1nda_sync.alerts.sweep import sweep

    settings = Settings.load()
    engine = build_engine(settings)
    conn = engine.connect()
    try:
        swept = sweep(conn, engine.clock(), settings)
        if not planned.get("notify", True):
            log.info("notify=false: %s mail(s) stay in the outbox for the next drain", swept)
            return {"sent": 0}
        sent = dict(drain(conn, engine.clock(), settings))
        from l1nda_sync.webhook import deliver

        posted = deliver(conn, engine.clock())
        if any(posted.values()):
            log.info("webhook events: %s", posted)
        return {**sent, **{f"webhook_{k}": v for k, v in posted.items()}}
    finally:
        conn.close()


def report(planned: Mapping[str, Any], finished: Mapping[str, Any], notified: Mapping[str, Any]) -> dict[str, Any]:
    """Last task: complete the run's stored summary and log it as a table (counts only, never lists of ids)."""
    from l1nda_sync.engine.sync import RunReport

    summary = {**dict(finished), "mails_sent": int(notified.get("sent", 0))}
    if planned.get("run_id") is not None:
        summary = {**summary, **build_engine().close_report(planned["run_id"], {"mails_sent": summary["mails_sent"]})}
    known = {k: v for k, v in summary.items() if k in RunReport.__dataclass_fields__}
    log.info("run summary:\n%s", RunReport(**known).table())
    return {k: v for k, v in summary.items() if not isinstance(v, list)}


def drain_outbox() -> dict[str, int]:
    """The outbox DAG's task: resolve quiet problems, send reminders, send what is due."""
    return notify({"notify": True})


def dag_settings() -> Settings:
    """Settings the DAG files read while they are parsed: environment only, never a Variable or a database."""
    return Settings.load(use_airflow=False)


def failure_notifier(dag_id: str) -> list[Any]:
    """The DAG's failure callback: one mail to operations per failed run (empty when nobody is configured)."""
    settings = dag_settings()
    if not settings.ops_recipients:
        return []
    return [_run_failure_notifier_class()(
        to=list(settings.ops_recipients),
        from_email=settings.mail_from,
        smtp_conn_id=settings.smtp_conn_id,
        subject=f"[L1NDA sync] {dag_id} run failed: {{{{ dag_run.run_id }}}}",
        html_content=(
            f"<p>The Airflow run <b>{{{{ dag_run.run_id }}}}</b> of <b>{dag_id}</b> failed.</p>"
            "<p>Open the run in the Airflow UI to see which task failed and its log. Tokens are not checked "
            "until a run succeeds; the next scheduled run retries on its own.</p>"
        ),
    )]


def _run_failure_notifier_class() -> type:
    import jinja2.sandbox
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    class RunFailureNotifier(SmtpNotifier):
        """SmtpNotifier that also renders where the callback's context holds a serialized DAG.

        `airflow dags test` and `dag.test()` hand DAG callbacks a SerializedDAG without `get_template_env`
        (apache/airflow#64649); the stock notifier then fails before sending. A sandboxed environment is what
        Airflow itself falls back to.
        """

        def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
            if jinja_env is None and not hasattr(context.get("dag"), "get_template_env"):
                jinja_env = jinja2.sandbox.SandboxedEnvironment(autoescape=True)
            super().render_template_fields(context, jinja_env)

    return RunFailureNotifier
