"""The installed command: settings, logs, credentials, shutdown, hostile bodies."""

from __future__ import annotations

import json
import select
import signal
import socket
from pathlib import Path

import httpx
import pytest

from bench.processes import free_port
from exporter.monitoring.config import MonitoringConfig
from exporter.settings import Settings, env_name
from tests.servers import exporter_process, run_cli


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("command", ["serve", "rules", "simulate"])
def test_every_command_has_help(command: str) -> None:
    # Help text is %-formatted by argparse: a description with a literal
    # "2%" once crashed `rules --help` with a traceback.
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")
    assert "Traceback" not in result.stderr


def test_rules_help_documents_every_threshold() -> None:
    result = run_cli("rules", "--help")
    text = " ".join(result.stdout.split())
    for name, field in MonitoringConfig.model_fields.items():
        assert "--" + name.replace("_", "-") in text
        assert field.description is not None
        assert " ".join(field.description.split()) in text


def test_help_documents_every_setting() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for name, field in Settings.model_fields.items():
        assert "--" + name.replace("_", "-") in text
        assert env_name(name) in text
        assert field.description is not None
        assert " ".join(field.description.split()) in text


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"CLOUDMAILIN_EXPORTER_PORT": "eighty"}, (), "CLOUDMAILIN_EXPORTER_PORT / --port"),
        ({}, ("--port", "70000"), "CLOUDMAILIN_EXPORTER_PORT / --port"),
        ({}, ("--state-url", "mysql://x"), "CLOUDMAILIN_EXPORTER_STATE_URL / --state-url"),
        (
            {},
            ("--state-url", "redis+sentinel://:pw@sentinel/mymaster/0"),
            "CLOUDMAILIN_EXPORTER_STATE_URL / --state-url",
        ),
        ({}, ("--max-domains", "0"), "CLOUDMAILIN_EXPORTER_MAX_DOMAINS / --max-domains"),
        ({"CLOUDMAILIN_EXPORTER_LOG_LEVEL": "loud"}, (), "CLOUDMAILIN_EXPORTER_LOG_LEVEL"),
        (
            {},
            ("--basic-auth-username", "only-user"),
            "CLOUDMAILIN_EXPORTER_BASIC_AUTH_PASSWORD",
        ),
        ({"CLOUDMAILIN_EXPORTER_BEARER_TOKEN_FILE": "/nonexistent/token"}, (), "BEARER_TOKEN_FILE"),
    ],
)
def test_invalid_settings_fail_with_one_line(
    env: dict[str, str], args: tuple[str, ...], named: str
) -> None:
    result = run_cli(*args, env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_setting_in_environment_is_ignored_but_flag_is_refused() -> None:
    result = run_cli("--no-such-flag", "1")
    assert result.returncode == 2
    assert "--no-such-flag" in result.stderr


def test_flags_override_environment(tmp_path: Path) -> None:
    port = free_port()
    # exporter_process sets the variable to another free port: the flag wins.
    with exporter_process(tmp_path, args=("--port", str(port)), listen_port=port) as proc:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        assert proc.url == f"http://127.0.0.1:{port}"


def test_open_webhook_warns_loudly_in_json_logs(tmp_path: Path) -> None:
    with exporter_process(tmp_path) as proc:
        assert httpx.get(proc.url + "/healthz").status_code == 200
        logs = json_lines(proc.logs())
    warnings = [e for e in logs if e["level"] == "warning"]
    assert any("NO WEBHOOK CREDENTIALS" in str(e["message"]) for e in warnings)
    assert all({"time", "level", "logger", "message"} <= set(e) for e in logs)


def test_secrets_from_files_and_never_in_logs(tmp_path: Path) -> None:
    (tmp_path / "user").write_text("cm-user\n")
    (tmp_path / "password").write_text("pa55-from-file\n")
    env = {
        "CLOUDMAILIN_EXPORTER_BASIC_AUTH_USERNAME_FILE": str(tmp_path / "user"),
        "CLOUDMAILIN_EXPORTER_BASIC_AUTH_PASSWORD_FILE": str(tmp_path / "password"),
        "CLOUDMAILIN_EXPORTER_BEARER_TOKEN": "tok-in-env",
        "CLOUDMAILIN_EXPORTER_LOG_LEVEL": "debug",
        "CLOUDMAILIN_EXPORTER_ACCESS_LOG": "true",
    }
    with exporter_process(tmp_path, env=env) as proc:
        body = {"events": [{"kind": "delivery", "recipient": "a@x.example"}]}
        good = httpx.post(proc.url + "/events", json=body, auth=("cm-user", "pa55-from-file"))
        bad = httpx.post(proc.url + "/events", json=body, auth=("cm-user", "pa55-wrong"))
        token = httpx.post(
            proc.url + "/events", json=body, headers={"authorization": "Bearer tok-in-env"}
        )
        assert (good.status_code, bad.status_code, token.status_code) == (200, 401, 200)
        logs = proc.logs()
    assert "NO WEBHOOK CREDENTIALS" not in logs
    access = [e for e in json_lines(logs) if e["logger"] == "uvicorn.access"]
    assert len(access) == 3  # the access log is on, and says no more than it should
    assert all("POST /events HTTP/1.1" in str(e["message"]) for e in access)
    for secret in ("pa55-from-file", "pa55-wrong", "tok-in-env", "cm-user:"):
        assert secret not in logs


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2-in-url@localhost:6379/0",
        "rediss://user:hunter2-in-url@localhost:6380/1",
        "redis+sentinel://:hunter2-in-url@localhost:26379/mymaster/0",
    ],
)
def test_a_password_in_the_state_url_stays_out_of_reprs(url: str) -> None:
    # A repr lands in tracebacks and debug logs; the webhook's own
    # secrets are SecretStr, the state URL must be hidden as well.
    settings = Settings(state_url=url, basic_auth_username="u", basic_auth_password="hunter2-pw")
    assert settings.state_url == url
    for text in (repr(settings), str(settings)):
        assert "hunter2" not in text


def test_sigterm_shuts_down_gracefully(tmp_path: Path) -> None:
    with exporter_process(tmp_path) as proc:
        proc.proc.send_signal(signal.SIGTERM)
        code = proc.proc.wait(20)
        logs = proc.logs()
    # uvicorn re-raises the signal after a clean shutdown so that the parent
    # sees how the process ended.
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete." in logs
    assert "Traceback" not in logs


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_gigabyte_body_is_refused_without_being_read(tmp_path: Path) -> None:
    env = {"CLOUDMAILIN_EXPORTER_MAX_BODY_BYTES": str(1024 * 1024)}
    with exporter_process(tmp_path, env=env) as proc:
        port = int(proc.url.rsplit(":", 1)[1])
        before = rss_kib(proc.proc.pid)
        chunk = b"[" * (1024 * 1024)
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        sent = 0
        with socket.create_connection(("127.0.0.1", port), 10) as sock:
            sock.sendall(
                b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            reply = b""
            try:
                while sent < 1024**3 and not reply:
                    sock.sendall(framed)
                    sent += len(chunk)
                    if select.select([sock], [], [], 0)[0]:
                        reply = sock.recv(65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
            if not reply:
                reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
        assert sent < 64 * 1024 * 1024  # refused long before the gigabyte
        assert rss_kib(proc.proc.pid) - before < 64 * 1024
        assert httpx.get(proc.url + "/healthz").status_code == 200


def test_a_declared_gigabyte_is_refused_before_it_is_sent(tmp_path: Path) -> None:
    with exporter_process(tmp_path) as proc:
        port = int(proc.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), 10) as sock:
            sock.sendall(
                b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % 1024**3
            )
            reply = b""
            while not reply.endswith(b"}"):
                more = sock.recv(65536)
                if not more:
                    break
                reply += more
        assert reply.startswith(b"HTTP/1.1 413")
        assert b'{"error":"body larger than 10485760 bytes"}' in reply
        assert httpx.get(proc.url + "/healthz").status_code == 200
