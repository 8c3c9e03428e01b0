"""The bodies of the DAGs' tasks: the run pipeline's steps (`l1nda_sync.pipeline`), one per task, plus what only
Airflow needs (trigger params, failing without retry on bad input, the failed-run mail). DAG files only wire these.

Only ids, counts and short texts go in and out (they travel as XCom); tokens are decrypted inside the
check step, in memory, one at a time.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from typing import Any, ParamSpec, TypeVar

from l1nda_sync.engine.sync import RunReport
from l1nda_sync.pipeline import PlannedRun, RunPipeline, RunRequest
from l1nda_sync.settings import Settings

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


class ParamError(ValueError):
    """A trigger parameter is wrong; the message names it and says what to do."""


KNOWN_PARAMS = ("token_ids", "force", "dry_run", "send_mails", "cutover_preview_at")
RENAMED_PARAMS = {"notify": "send_mails"}  # old name -> new: runs triggered by older scripts keep working
TOKEN_ID_MAX = 2**31 - 1


def parse_params(params: Mapping[str, Any]) -> RunRequest:
    """Validate the trigger form (the UI validates types too; runs triggered from the API or CLI may not).

    Every problem is a ParamError naming the field: an unknown key (a misspelt `tokenids` would otherwise be
    ignored and the run would check every due token), a token id that is not a whole number in ASCII digits
    ('²' passes str.isdigit but is no id) or out of range, a flag that is not true or false.
    """
    params = _renamed(params)
    unknown = sorted(str(k) for k in params if k not in KNOWN_PARAMS)
    if unknown:
        raise ParamError(f"{', '.join(unknown)}: not a parameter of this DAG; the known ones are "
                         f"{', '.join(KNOWN_PARAMS)} (check the spelling in the run's conf)")
    flags = {name: _flag(params, name, default)
             for name, default in (("force", False), ("dry_run", False), ("send_mails", True))}
    return RunRequest(token_ids=_token_ids(params.get("token_ids") or []), **flags,
                      cutover_preview_at=_moment(params.get("cutover_preview_at")))


def _moment(value: Any) -> str | None:
    """`cutover_preview_at`: empty (off), 'now', 'soap_end' or a date (YYYY-MM-DD[THH:MM], Amsterdam time)."""
    if value is None or value == "":
        return None
    from l1nda_sync.settings import parse_moment

    if not isinstance(value, str):
        raise ParamError(f"cutover_preview_at: expected text (now, soap_end or a date), got {type(value).__name__}")
    text = value.strip().lower()
    if text in ("now", "soap_end"):
        return text
    try:
        return parse_moment(value).isoformat()
    except ValueError as exc:
        raise ParamError(f"cutover_preview_at: {exc}") from None


def _renamed(params: Mapping[str, Any]) -> dict[str, Any]:
    """Old param names still work. Airflow fills every declared param's default into a run's params, so an old
    name arrives beside the new one's default: both must allow sending, else the mails are held (holding them is
    the safe side: they wait in the outbox)."""
    out = dict(params)
    for old, new in RENAMED_PARAMS.items():
        if old in out:
            given = _flag(out, old, True)
            log.warning("param %s is renamed to %s; please use %s", old, new, new)
            out.pop(old)
            out[new] = given and _flag(out, new, True)
    return out


def _token_ids(raw_ids: Any) -> tuple[int, ...]:
    if not isinstance(raw_ids, list | tuple):
        raise ParamError(f"token_ids: expected a list of token ids, got {type(raw_ids).__name__}")
    ids: set[int] = set()
    for value in raw_ids:
        text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else None
        if text is None or not text.isascii() or not text.isdigit():
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "…"
            raise ParamError(f"token_ids: {shown} is not a token id (a positive whole number, e.g. 42)")
        number = int(text)
        if not 1 <= number <= TOKEN_ID_MAX:
            raise ParamError(f"token_ids: {text[:20]} is out of range; a token id is from 1 to {TOKEN_ID_MAX}")
        ids.add(number)
    return tuple(sorted(ids))


def _flag(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ParamError(f"{name}: expected true or false, got {value!r}")
    return value


def _pipeline() -> RunPipeline:
    from l1nda_sync.pipeline import RunPipeline, build_engine

    return RunPipeline(build_engine())


def _fail_without_retry(exc: Exception) -> Exception:
    """Bad input does not get better by retrying: fail the task at once (inside Airflow) with the message."""
    try:
        from airflow.sdk.exceptions import AirflowFailException
    except ImportError:  # pragma: no cover - outside Airflow
        return exc
    return AirflowFailException(str(exc))


def plan(params: Mapping[str, Any], dag_run_id: str | None) -> dict[str, Any]:
    """First task: validate params, claim due tokens, cut batches. A dry run does all its work here."""
    from l1nda_sync.engine.checking import KeysCannotDecrypt
    from l1nda_sync.engine.planning import PlanError
    from l1nda_sync.registry.schema import SchemaError
    from l1nda_sync.settings import SettingsError

    try:
        request = parse_params(params)
        return _pipeline().plan(request, dag_run_id=dag_run_id).to_xcom()
    except (ParamError, PlanError, SchemaError, SettingsError, KeysCannotDecrypt) as exc:
        # KeysCannotDecrypt: a dry run probes here; as in the check task, retrying brings no key back.
        raise _fail_without_retry(exc) from None


def batch_kwargs(planned: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One mapped check task per batch (none for a dry run, whose plan did all the work)."""
    return [{"sync_run": planned["run_id"], "batch": list(b)} for b in planned.get("batches", [])]


def check(run_id: int | None, batch: Sequence[int]) -> dict[str, int]:
    from l1nda_sync.engine.checking import KeysCannotDecrypt

    try:
        return _pipeline().check(run_id, batch)
    except KeysCannotDecrypt as exc:
        # A deployment fault: retrying does not bring the key back. The other tokens' checks are stored.
        raise _fail_without_retry(exc) from None


def apply(planned: Mapping[str, Any]) -> dict[str, Any]:
    """Apply the checks and reconcile the links. Checks that cannot be applied fail the task (so the run is
    retried and, if the fault stays, operations get the failed-run mail); every other token is applied."""
    run = PlannedRun.from_xcom(planned)
    if run.dry_run:
        return dict(run.dry_report or {})
    # XCom carries counts; the per-token and per-link lists are stored on the run (runs.summary).
    return _pipeline().apply(run).counts()


def deliver(planned: Mapping[str, Any]) -> dict[str, int]:
    """Sweep problems, then send the mails and webhook events (unless the run holds its mails)."""
    run = PlannedRun.from_xcom(planned)
    if run.dry_run:
        return {"sent": 0}
    return _pipeline().deliver(send_mails=run.send_mails).counts()


def close_report(planned: Mapping[str, Any], applied: Mapping[str, Any], delivered: Mapping[str, Any]
                 ) -> dict[str, Any]:
    """Last task: complete the run's stored summary and log it as a table (counts only, never lists of ids)."""
    run = PlannedRun.from_xcom(planned)
    if run.dry_run:
        report = RunReport.from_summary(applied, dry_run=True)
        log.info("run summary:\n%s", report.table())
        return report.counts()
    return _pipeline().close(run, applied, delivered).counts()


def close_run(planned: Mapping[str, Any] | None) -> dict[str, int]:
    """The DAG's last word on its run, whatever happened (trigger rule all_done): a run the apply step did not
    finish (a check or the apply failed for good) is marked failed and its claims are released at once, as
    `sync run` does, instead of holding its tokens until the lease ends. Its stored checks stay pending; the next
    run applies them. After a successful apply this changes nothing."""
    run = PlannedRun.from_xcom(planned or {})  # None: the plan failed, no run was opened
    if run.run_id is None:
        return {"released": 0}
    released = _pipeline().engine.abort(run.run_id, "a check or the apply step failed; see the failed task's log")
    if released:
        log.info("run %s closed as failed; claims on %d token(s) released", run.run_id, released)
    return {"released": released}


def drain_outbox() -> dict[str, int]:
    """The outbox DAG's task: resolve quiet problems, send reminders, send what is due."""
    return _pipeline().deliver(send_mails=True).counts()


def dag_settings() -> Settings:
    """Settings the DAG files read while they are parsed: environment only, never a Variable or a database."""
    return Settings.load(use_airflow=False)


def failure_notifier(dag_id: str) -> list[Any]:
    """The DAG's failure callback: one mail to operations per failed run (empty when nobody is configured)."""
    settings = dag_settings()
    if not settings.ops_recipients:
        return []
    return [_run_failure_notifier_class()(dag_id, settings)]


ERROR_KEY = "l1nda_error"  # XCom key: a failed task body's masked error, for the failed-run mail
_TOKENISH = re.compile(r"(?<![A-Za-z0-9])(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{16,}(?![A-Za-z0-9])")


_IDENTIFIER = re.compile(r"(?:[A-Z0-9]{1,12}|[a-z0-9]{1,12})(?:_(?:[A-Z0-9]{1,12}|[a-z0-9]{1,12}))+")


def _mask_tokenish(match: re.Match[str]) -> str:
    """A setting's name (L1NDA_FERNET_KEYS, l1nda_fernet_keys: short words of one case joined by '_') is not a
    secret and must stay readable: it is what the mail tells operations to fix. Anything else token-like is cut."""
    from l1nda_sync.masking import mask

    text = match.group(0)
    return text if _IDENTIFIER.fullmatch(text) else mask(text)


def mask_text(text: str) -> str:
    """An error text fit for a mail: URL passwords hidden, anything token-like cut to its last 4 characters."""
    from l1nda_sync.masking import redact_url

    return _TOKENISH.sub(_mask_tokenish, redact_url(text))


def _records_failure(body: Callable[P, R]) -> Callable[P, R]:
    """Wrap a task body: its error (masked) is kept as XCom `l1nda_error`, so the failed-run mail can name it."""

    @functools.wraps(body)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return body(*args, **kwargs)
        except Exception as exc:
            with contextlib.suppress(Exception):  # outside Airflow there is nobody to tell
                from airflow.sdk import get_current_context

                get_current_context()["ti"].xcom_push(ERROR_KEY, mask_text(f"{type(exc).__name__}: {exc}")[:2000])
            raise

    return wrapper


plan = _records_failure(plan)  # the DAG files call these at run time
check = _records_failure(check)
apply = _records_failure(apply)
deliver = _records_failure(deliver)
close_report = _records_failure(close_report)
drain_outbox = _records_failure(drain_outbox)
close_run = _records_failure(close_run)
# The task bodies' names before the run pipeline: a DAG run that began on the previous release and resumes on this
# one calls them (for one release).
finish, notify, report = apply, deliver, close_report


def run_url(dag_id: str, run_id: str, task_id: str | None = None) -> str:
    """The run (or its task) in the Airflow UI, from `[api] base_url`."""
    from urllib.parse import quote

    try:
        from airflow.configuration import conf

        base = (conf.get("api", "base_url", fallback=None) or "").strip()
    except Exception:  # pragma: no cover - outside Airflow
        base = ""
    url = f"{(base or 'http://localhost:8080').rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    return url + (f"/tasks/{quote(task_id, safe='')}" if task_id else "")


def _recorded_error(ti: Any, dag_id: str, run_id: str) -> str | None:
    """The masked error the failed task body kept as XCom: through the task SDK where the callback runs in the
    DAG processor, else (`dag.test()`, the scheduler's own process) from the metadata database."""
    with contextlib.suppress(Exception):
        pulled = ti.xcom_pull(task_ids=ti.task_id, key=ERROR_KEY, map_indexes=ti.map_index)
        return None if pulled is None else str(pulled)
    with contextlib.suppress(Exception):
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            found = session.scalars(XComModel.get_many(run_id=run_id, key=ERROR_KEY, task_ids=ti.task_id,
                                                       dag_ids=dag_id, map_indexes=ti.map_index)).first()
            return XComModel.deserialize_value(found) if found is not None else None
    return None


def failed_run_message(dag_id: str, context: Mapping[str, Any], settings: Settings) -> EmailMessage:
    """The failed-run mail: text and HTML, the failed task and its error (masked), the link to the run."""
    import html
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    dag_run = context.get("dag_run")
    run_id = str(context.get("run_id") or getattr(dag_run, "run_id", "") or "?")
    run_type = str(getattr(getattr(dag_run, "run_type", None), "value", getattr(dag_run, "run_type", "")) or "")
    ti = context.get("ti") or context.get("task_instance")
    task_id = getattr(ti, "task_id", None)
    map_index = getattr(ti, "map_index", -1)
    task = f"{task_id}[{map_index}]" if task_id and map_index is not None and map_index >= 0 else task_id
    error = _recorded_error(ti, dag_id, run_id) if ti is not None else None
    error = mask_text(str(error)) if error else "not recorded (the task may have been killed or timed out); see its log"
    url = run_url(dag_id, run_id, task_id)
    manual = run_type == "manual"
    if manual:
        impact = "This manual run failed; scheduled runs are unaffected."
    elif dag_id == "nmbrs_alert_outbox":
        impact = "Alert mails and webhook events wait in their outboxes until a run succeeds; none is lost."
    else:
        impact = ("Tokens that were due are not checked until a run succeeds; the next scheduled run retries on "
                  "its own.")
    lines = [
        "Hello support team,", "",
        f"The Airflow run {run_id} of {dag_id} failed{f' ({run_type})' if run_type else ''}.", "",
        f"Failed task: {task or 'unknown'}",
        f"Error: {error}", "",
        impact, "",
        f"Open the run: {url}",
    ]
    message = EmailMessage()
    message["Subject"] = f"[L1NDA sync] {dag_id} run failed: {run_id}" + (f" (task {task})" if task else "")
    message["From"] = settings.mail_from
    message["To"] = ", ".join(settings.ops_recipients)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="l1nda-sync")
    message["Auto-Submitted"] = "auto-generated"
    message.set_content("\n".join(lines) + "\n", cte="quoted-printable")
    e = html.escape
    message.add_alternative(
        "<!DOCTYPE html><html><body style=\"font-family:Arial,Helvetica,sans-serif;font-size:14px;\">"
        f"<p>Hello support team,</p><p>The Airflow run <b>{e(run_id)}</b> of <b>{e(dag_id)}</b> failed"
        f"{f' ({e(run_type)})' if run_type else ''}.</p>"
        f"<p>Failed task: <b>{e(task or 'unknown')}</b><br>Error: <code>{e(error)}</code></p>"
        f"<p>{e(impact)}</p><p><a href=\"{e(url)}\">Open the run in Airflow</a></p></body></html>",
        subtype="html", cte="quoted-printable")
    return message


def _run_failure_notifier_class() -> type:
    from airflow.sdk import BaseNotifier

    class RunFailureNotifier(BaseNotifier):
        """Mails operations about a failed run: text and HTML, sent once over the SMTP connection (no retries
        that could send it twice). Nothing is templated, so nothing depends on the callback's DAG object
        (`airflow dags test` hands callbacks a SerializedDAG without `get_template_env`, apache/airflow#64649)."""

        template_fields = ()

        def __init__(self, dag_id: str, settings: Settings) -> None:
            super().__init__()
            self.dag_id = dag_id
            self.settings = settings

        def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
            return None

        def notify(self, context: Any) -> None:
            from l1nda_sync.alerts.outbox import SmtpSender

            sender = SmtpSender(self.settings.smtp_conn_id)
            try:
                sender(failed_run_message(self.dag_id, context, self.settings))
            finally:
                sender.close()

    return RunFailureNotifier
