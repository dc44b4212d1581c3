"""One way to reach a model: the ``openai`` client against an OpenAI-compatible base URL.

``sim`` as a base URL means the built-in simulator, started on loopback in this process the
first time it is needed. Keys come only from environment variables, looked up by name at
call time; they are never returned in anything that gets stored or logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

from depsim_assets import secrets

if TYPE_CHECKING:
    import openai

# dagster and openai are imported where used: showing a URL or refusing a registry file
# (`depsim candidates list`) should not wait a second for them.

SIM = "sim"
# The simulator and many local servers need no key, but the client insists on one.
NO_KEY = "no-key-needed"


class EndpointError(RuntimeError):
    """An endpoint cannot be used (missing key variable, unreachable, bad URL)."""


def resolve_base_url(base_url: str) -> str:
    """The URL to call: ``sim`` starts (once) and returns the loopback simulator."""
    if base_url == SIM:
        from depsim_assets.sim import ensure_sim_server

        return ensure_sim_server()
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EndpointError(
            f"base_url {display_endpoint(base_url)!r} is not an http(s) URL or 'sim'"
        )
    # A password in the URL is a key like any other: an error that echoes it is scrubbed.
    if parts.password:
        secrets.remember(parts.password)
        secrets.remember(unquote(parts.password))
    return base_url


def display_endpoint(base_url: str) -> str:
    """The base URL as it may be stored or shown: no user-info, query or fragment (they can
    hold keys). Use it for every URL that is printed, logged, stored or put in metadata."""
    if base_url == SIM:
        return SIM
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - a malformed port raises here, not in the caller
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def api_key_from_env(env_name: str | None) -> str:
    """The key held by env var ``env_name`` (or a placeholder when no key is configured)."""
    if not env_name:
        return NO_KEY
    import dagster as dg

    value = dg.EnvVar(env_name).get_value()
    if not value:
        raise EndpointError(f"environment variable {env_name} (named by api_key_env) is not set")
    secrets.remember(value)  # from now on, any text that echoes it is scrubbed before storage
    return value


def async_client(
    base_url: str,
    *,
    api_key_env: str | None,
    timeout_s: float,
    max_retries: int = 2,
    max_connections: int = 100,
) -> openai.AsyncOpenAI:
    """An async client for one endpoint, over aiohttp with ``max_connections`` kept alive.

    The aiohttp transport (openai's ``aiohttp`` extra) costs about half the client CPU per
    call of the default one (3.2 vs 6.0 ms measured here), which is what binds at hundreds
    of requests a second. Pass ``max_retries=0`` when the call engine does the retrying.
    """
    import httpx2
    import openai

    limits = httpx2.Limits(max_connections=max_connections,
                           max_keepalive_connections=max_connections)
    return openai.AsyncOpenAI(
        base_url=resolve_base_url(base_url),
        api_key=api_key_from_env(api_key_env),
        timeout=timeout_s,
        max_retries=max_retries,
        http_client=openai.DefaultAioHttpClient(limits=limits, timeout=timeout_s),
    )


# Long enough for a server's whole explanation (a validation error names the field and why),
# short enough for a table cell and a log line.
MAX_ERROR_CHARS = 2000


def describe_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Free text as it may be stored: credentials scrubbed, whitespace runs (newlines
    included) collapsed to one space, at most ``limit`` characters."""
    # Scrub before cutting (a cut key no longer matches its shape); the pre-cut bounds the
    # work on a server's megabyte-long HTML error page.
    flat = " ".join(secrets.scrub(text[: limit * 8]).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe_error(exc: BaseException) -> str:
    """``Class: message`` for a failed call: the WHOLE message (the part after a first line
    usually says why), plus its cause when that adds something, key-scrubbed and capped at
    :data:`MAX_ERROR_CHARS`."""
    import openai

    message = str(exc)
    if isinstance(exc, openai.APIStatusError):
        # openai leaves a non-JSON body (a server's plain-text explanation) out of str(exc).
        body = exc.body if exc.body is not None else _response_text(exc)
        if body and str(body) not in message:
            message = f"{message} - {body}"
    else:
        cause = exc.__cause__ or exc.__context__
        if cause is not None and str(cause) and str(cause) not in message:
            message = f"{message} (caused by {type(cause).__name__}: {cause})"
    return describe_text(f"{type(exc).__name__}: {message}")


def _response_text(exc: openai.APIStatusError) -> str:
    try:
        return exc.response.text
    except Exception:  # noqa: BLE001 - a body that cannot be read is simply not shown
        return ""
