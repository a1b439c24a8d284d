"""The Tardis API key from Google Secret Manager (``TARDIS_API_KEY_SECRET``).

``TARDIS_API_KEY_SECRET`` names a secret version, ``projects/P/secrets/S/versions/V`` (``V``
a number or ``latest``; ``projects/P/secrets/S`` alone means ``latest``). The key is read
when a request needs it, never at import or when settings are loaded, so commands that make
no Tardis request never call Secret Manager; a value read is kept for ``CACHE_SECONDS`` in
the process (a rotated key is picked up within that time).

Credentials are Google's defaults (workload identity on GKE, ``GOOGLE_APPLICATION_CREDENTIALS``
elsewhere). With ``SECRET_MANAGER_EMULATOR_HOST`` set (``http://host:port`` or ``host:port``)
the client talks REST to that endpoint with anonymous credentials: Google ships no local
Secret Manager, so the tests use a stand-in server there.

A failure raises `SecretError` with one line naming the secret and the reason; neither the
value nor anything read from the payload is ever part of a message.
"""

from __future__ import annotations

import re
import threading
import time

from mdh_lib.config import Secret

CACHE_SECONDS = 300.0
_NAME = re.compile(r"^projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?$")
_cache: dict[tuple[str, str], tuple[float, Secret]] = {}
_lock = threading.Lock()


class SecretError(RuntimeError):
    """A secret could not be read; the message names the secret, never its value."""


def version_name(name: str) -> str:
    """The full version name for ``name`` (``latest`` when it names only the secret)."""
    name = name.strip().strip("/")
    if not _NAME.match(name):
        raise SecretError(f"TARDIS_API_KEY_SECRET must be projects/PROJECT/secrets/NAME/versions/VERSION, not {name!r}")
    return name if "/versions/" in name else f"{name}/versions/latest"


def _client(emulator_host: str):
    from google.cloud import secretmanager

    if not emulator_host:
        return secretmanager.SecretManagerServiceClient()
    from google.auth.credentials import AnonymousCredentials

    host = emulator_host if "://" in emulator_host else f"http://{emulator_host}"
    return secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(), transport="rest", client_options={"api_endpoint": host})


def _reason(exc: Exception) -> str:
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import DefaultCredentialsError

    if isinstance(exc, gexc.NotFound):
        return "no such secret or version (404)"
    if isinstance(exc, (gexc.PermissionDenied, gexc.Forbidden)):
        return "permission denied (403): the caller needs roles/secretmanager.secretAccessor on the secret"
    if isinstance(exc, (gexc.Unauthenticated, gexc.Unauthorized)):
        return "the Google credentials were refused (401)"
    if isinstance(exc, gexc.FailedPrecondition):
        return "the version is disabled or destroyed"
    if isinstance(exc, DefaultCredentialsError):
        return "no Google credentials found (set GOOGLE_APPLICATION_CREDENTIALS or use workload identity)"
    if isinstance(exc, gexc.GoogleAPICallError):
        return f"Secret Manager answered {exc.code or ''} {type(exc).__name__}".replace("  ", " ")
    return f"{type(exc).__name__}"  # a transport error: its text may quote a response, so only the type


def access_secret(name: str, *, emulator_host: str = "") -> Secret:
    """The payload of secret version ``name`` as a `Secret` (whitespace at the ends removed)."""
    full = version_name(name)
    now = time.monotonic()
    with _lock:
        hit = _cache.get((full, emulator_host))
        if hit and now - hit[0] < CACHE_SECONDS:
            return hit[1]
    try:
        client = _client(emulator_host)
        try:
            response = client.access_secret_version(request={"name": full}, timeout=30)
        finally:
            client.transport.close()
    except Exception as exc:
        raise SecretError(f"could not read the Tardis API key from Secret Manager ({full}): {_reason(exc)}") from None
    payload = response.payload
    if payload.data_crc32c:
        import google_crc32c

        if google_crc32c.value(payload.data) != payload.data_crc32c:
            raise SecretError(f"the Tardis API key read from Secret Manager ({full}) failed its CRC32C check")
    try:
        value = Secret(payload.data.decode("utf-8").strip())
    except UnicodeDecodeError:
        raise SecretError(f"the secret {full} is not UTF-8 text") from None
    if not value:
        raise SecretError(f"the secret {full} is empty")
    with _lock:
        _cache[(full, emulator_host)] = (now, value)
    return value


def clear_cache() -> None:
    with _lock:
        _cache.clear()
