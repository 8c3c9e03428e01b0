"""The identity server's HTML: the login and consent page of /connect/authorize (a plain form, so it works in
a browser and with a scripted form POST) and its error pages ("Invalid scope", unknown client, ...)."""

from __future__ import annotations

import html

from aiohttp import web

SCOPE_TEXTS = {
    "offline_access": "Stay connected when you are not signed in (refresh tokens)",
    "company.info.read": "Read your debtors and companies",
    "company.info": "Read and change your debtors and companies",
    "debtor.info.read": "Read your debtor information and tags",
    "user.info.read": "Read your user information",
    "openid": "Know who you are",
    "profile": "Read your profile",
}
# The authorize parameters the form carries back in hidden fields.
CARRIED = ("client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge",
           "code_challenge_method")
_STYLE = ("body{font-family:sans-serif;max-width:32rem;margin:3rem auto;color:#222}"
          "label{display:block;margin:.6rem 0 .2rem}input[type=text],input[type=password]{width:100%;padding:.4rem}"
          "button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem}.error{color:#b00020}")


def _document(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>")


def consent_page(params: dict[str, str], client_name: str, scopes: list[str], *, username: str = "",
                 error: str | None = None, status: int = 200) -> web.Response:
    """Sign in and allow (or deny) the client the listed scopes."""
    hidden = "".join(f'<input type="hidden" name="{name}" value="{html.escape(params[name])}">'
                     for name in CARRIED if params.get(name))
    items = "".join(f"<li><code>{html.escape(s)}</code>: {html.escape(SCOPE_TEXTS.get(s, s))}</li>" for s in scopes)
    problem = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = (f"<h1>Nmbrs</h1><h2>{html.escape(client_name)} wants to connect to your Nmbrs environment</h2>"
            f"{problem}<p>It asks for:</p><ul id=\"scopes\">{items}</ul>"
            f'<form method="post" action="/connect/authorize">{hidden}'
            f'<label for="username">E-mail address</label>'
            f'<input type="text" id="username" name="username" value="{html.escape(username)}" autocomplete="username">'
            f'<label for="password">Password</label>'
            f'<input type="password" id="password" name="password" autocomplete="current-password">'
            f'<button type="submit" name="action" value="allow">Allow</button>'
            f'<button type="submit" name="action" value="deny">Deny</button></form>')
    return web.Response(status=status, text=_document("Nmbrs - Connect an app", body), content_type="text/html")


def error_page(status: int, title: str, message: str) -> web.Response:
    """An identity server error page: the user stays here, nothing is sent back to the client."""
    body = f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
    return web.Response(status=status, text=_document(title, body), content_type="text/html")
