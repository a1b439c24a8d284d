"""The Tardis API key from Google Secret Manager (``TARDIS_API_KEY_SECRET``).

Google ships no local Secret Manager (no emulator exists), so these tests run the real
``google-cloud-secret-manager`` client (REST transport) against ``SecretManagerStandIn``, a
small stand-in server on 127.0.0.1 written here that answers the one call mdh makes,
``GET /v1/projects/P/secrets/S/versions/V:access``, in Google's JSON format (payload in
base64 with its CRC32C, errors as ``{"error": {code, message, status}}``). The key it serves
is then used against the real `mdh sample-server`, which refuses days past the first of the
month without it.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import google_crc32c
import pytest

from mdh_assets.cli import main
from mdh_lib.config import load_settings
from mdh_lib.sample_server import SampleServer
from mdh_lib.secrets import SecretError, access_secret, clear_cache, version_name

KEY = "td-key-7f3a9c0e51b24d68"
SECRET = "projects/mdh-test/secrets/tardis-api-key"
DAY = ["--start-date", "2024-01-02", "--end-date", "2024-01-02", "--venues", "binance"]  # not a first of the month: needs the key


class SecretManagerStandIn:
    """A stand-in for Secret Manager's ``versions:access`` REST call (no local server exists).

    ``secrets`` maps ``projects/P/secrets/S`` to its versions' payloads (version 1 first);
    ``denied`` holds secret names answered with 403. ``requests`` logs every path asked for."""

    def __init__(self, secrets: dict[str, list[str]], denied: set[str] = frozenset()):
        self.secrets, self.denied, self.requests = secrets, set(denied), []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                standin.requests.append(self.path)
                status, body = standin.answer(self.path.split("?", 1)[0])
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def answer(self, path: str) -> tuple[int, dict]:
        def error(code: int, status: str, message: str):
            return code, {"error": {"code": code, "message": message, "status": status}}

        if not (path.startswith("/v1/") and path.endswith(":access") and "/versions/" in path):
            return error(404, "NOT_FOUND", f"no route {path}")
        name = path[len("/v1/"):-len(":access")]
        secret, version = name.split("/versions/")
        if secret in self.denied:
            return error(403, "PERMISSION_DENIED",
                         f"Permission 'secretmanager.versions.access' denied for resource '{name}' (or it may not exist).")
        versions = self.secrets.get(secret, [])
        number = len(versions) if version == "latest" else int(version) if version.isdigit() else 0
        if not 1 <= number <= len(versions):
            return error(404, "NOT_FOUND", f"Secret Version [{name}] not found.")
        data = versions[number - 1].encode()
        return 200, {"name": f"{secret}/versions/{number}",
                     "payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(google_crc32c.value(data))}}

    def __enter__(self) -> "SecretManagerStandIn":
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture()
def standin(monkeypatch):
    clear_cache()
    with SecretManagerStandIn({SECRET: ["an-old-key", f"{KEY}\n"]}, denied={"projects/mdh-test/secrets/locked"}) as srv:
        monkeypatch.setenv("SECRET_MANAGER_EMULATOR_HOST", srv.host)
        yield srv
    clear_cache()


@pytest.fixture()
def keyed_env(mdh_env, monkeypatch, standin):
    """A user (the shared test universe of conftest's ``mdh_env``: one process imports the
    partitions once) whose Tardis, a sample server of its own, wants ``KEY``, and whose key
    lives only in Secret Manager."""
    with SampleServer(api_key=KEY, trades_per_day=1_000) as srv:
        monkeypatch.setenv("TARDIS_DATASETS_ENDPOINT", srv.endpoint)
        monkeypatch.setenv("TARDIS_API_ENDPOINT", srv.endpoint)
        yield srv


def test_key_from_secret_manager_is_read_lazily_and_used(keyed_env, standin, monkeypatch, capsys):
    monkeypatch.setenv("TARDIS_API_KEY_SECRET", f"{SECRET}/versions/latest")
    settings = load_settings()
    import mdh_assets.definitions  # noqa: F401  (the code location builds its resources)

    assert standin.requests == []  # loading settings and definitions asks Secret Manager nothing
    assert "td-key" not in repr(settings)
    assert main(["download", *DAY, "--data-types", "trades"]) == 0
    assert standin.requests and all(p.startswith(f"/v1/{SECRET}/versions/latest:access") for p in standin.requests)
    assert len(standin.requests) <= 2  # cached in the process: not one call per file
    out = capsys.readouterr()
    assert KEY not in out.out + out.err

    from mdh_assets.pipeline import Runtime

    rt = Runtime(load_settings())
    events = [e for run in rt.instance.get_runs() for e in rt.instance.all_logs(run.run_id)]
    assert events and all(KEY not in str(e) for e in events)
    # without the secret the same day is refused: it was the Secret Manager key that opened it
    monkeypatch.delenv("TARDIS_API_KEY_SECRET")
    assert main(["download", *DAY, "--data-types", "trades", "--force"]) == 1
    assert "no TARDIS_API_KEY is set" in capsys.readouterr().err


def test_version_names_and_direct_access(standin):
    assert version_name(SECRET) == f"{SECRET}/versions/latest"
    assert access_secret(SECRET, emulator_host=standin.host) == KEY  # latest, trimmed
    assert access_secret(f"{SECRET}/versions/1", emulator_host=standin.host.removeprefix("http://")) == "an-old-key"
    assert repr(access_secret(f"{SECRET}/versions/2", emulator_host=standin.host)) == "Secret('***')"
    with pytest.raises(SecretError, match="must be projects/PROJECT/secrets/NAME"):
        version_name("tardis-api-key")


@pytest.mark.parametrize(("name", "reason"), [
    ("projects/mdh-test/secrets/nope/versions/1", "no such secret or version"),
    (f"{SECRET}/versions/9", "no such secret or version"),
    ("projects/mdh-test/secrets/locked/versions/latest", "permission denied (403)"),
])
def test_secret_errors_are_one_line_without_the_key(keyed_env, standin, monkeypatch, capsys, name, reason):
    with pytest.raises(SecretError) as info:
        access_secret(name, emulator_host=standin.host)
    message = str(info.value)
    assert reason in message and name in message and "\n" not in message and KEY not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__

    monkeypatch.setenv("TARDIS_API_KEY_SECRET", name)
    assert main(["download", *DAY, "--data-types", "trades"]) == 1
    err = capsys.readouterr().err
    assert reason in err and KEY not in err and "Traceback" not in err
