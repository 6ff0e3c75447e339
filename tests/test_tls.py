"""TLS to the database is libpq's own: it works, and verifies, without Python's `ssl` module.

The runner keeps `ssl` out of psycopg2's import (migrator/database.py); these tests prove that
encrypted, verified connections still work, end to end, against a server that accepts nothing
else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import HEAD, Result, job_env, run_job
from tests.pgcluster import Cluster


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _authority(directory: Path, name: str) -> Path:
    """A self-signed CA: its certificate and key as <name>.crt and <name>.key."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt"


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A cluster that accepts TCP connections only over TLS, with a certificate for 127.0.0.1."""
    certs = tmp_path_factory.mktemp("certs")
    _authority(certs, "ca")
    (certs / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr",
        cwd=certs,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
        cwd=certs,
    )  # fmt: skip
    server = Cluster()
    for name in ("server.crt", "server.key"):
        target = server.data / name
        shutil.copy(certs / name, target)
        target.chmod(0o600)
        if os.geteuid() == 0:  # the server runs as postgres
            shutil.chown(target, "postgres", "postgres")
    with (server.data / "postgresql.conf").open("a") as conf:
        conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    (server.data / "pg_hba.conf").write_text(
        "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n"
    )
    server.start()
    yield server, certs
    server.destroy()


def test_migrates_over_verified_tls(tls_cluster) -> None:
    server, certs = tls_cluster
    name = server.create_database()
    url = f"{server.url(name)}?sslmode=verify-full&sslrootcert={certs / 'ca.crt'}"
    applied = run_job("upgrade", "head", env=job_env(url))
    assert applied.code == 0, applied.stdout
    assert applied.final["applied"] == 5 and applied.final["revisions_after"] == [HEAD]
    again = run_job("upgrade", "head", env=job_env(url))  # the no-op path, driver alone
    assert again.code == 0, again.stdout
    assert [e["event"] for e in again.events][-2:] == ["nothing_to_do", "finished"]


def test_the_server_refuses_plain_connections(tls_cluster) -> None:
    """So the success above really went through TLS."""
    server, _ = tls_cluster
    url = f"{server.url(server.create_database())}?sslmode=disable"
    result = run_job("upgrade", "head", env=job_env(url, MIGRATE_WAIT_TIMEOUT="30"))
    assert_fails_at_once(result, "no encryption")  # the server's pg_hba.conf: nothing heals it


def assert_fails_at_once(result: Result, fragment: str) -> None:
    """Exit 2 on the first attempt: nothing a wait could change (MIGRATE_WAIT_TIMEOUT is 30)."""
    assert result.code == 2, result.stdout
    assert result.final["error"] == "DatabaseRejected"
    assert fragment in result.final["message"]
    assert result.named("database_unavailable") == []
    assert result.final["duration_s"] < 5


def test_a_certificate_from_another_authority_is_rejected(tls_cluster, tmp_path: Path) -> None:
    server, _ = tls_cluster
    stranger = _authority(tmp_path, "stranger")
    url = f"{server.url(server.create_database())}?sslmode=verify-full&sslrootcert={stranger}"
    result = run_job("upgrade", "head", env=job_env(url, MIGRATE_WAIT_TIMEOUT="30"))
    assert_fails_at_once(result, "certificate verify failed")
    assert server.password not in result.stdout


@pytest.mark.parametrize(
    ("host", "query", "fragment"),
    [
        # the certificate names 127.0.0.1 only
        (
            "localhost",
            "sslmode=verify-full&sslrootcert={ca}",
            'does not match host name "localhost"',
        ),
        ("127.0.0.1", "sslmode=verify-ca&sslrootcert=/nonexistent/ca.crt", "does not exist"),
        ("127.0.0.1", "sslmode=verify-ca&sslrootcert={certs}/san.ext", "root certificate file"),
        ("127.0.0.1", "sslmode=require&ssl_max_protocol_version=TLSv1", "protocol version"),
    ],
    ids=["host-name-mismatch", "missing-root-certificate", "garbage-root-certificate", "tls-1.0"],
)
def test_a_tls_setup_that_cannot_work_fails_at_once(tls_cluster, host, query, fragment) -> None:
    server, certs = tls_cluster
    url = server.url(server.create_database()).replace("@127.0.0.1:", f"@{host}:")
    url += "?" + query.format(ca=certs / "ca.crt", certs=certs)
    result = run_job("upgrade", "head", env=job_env(url, MIGRATE_WAIT_TIMEOUT="30"))
    assert_fails_at_once(result, fragment)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("sslmode=require", "server does not support SSL, but SSL was required"),
        ("sslmode=verify-full", "server does not support SSL, but SSL was required"),
        ("channel_binding=require", "channel binding required, but SSL not in use"),
        ("sslmode=requier", 'invalid sslmode value: "requier"'),
        ("channel_binding=bogus", 'invalid channel_binding value: "bogus"'),
        ("target_session_attrs=bogus", 'invalid target_session_attrs value: "bogus"'),
        ("ssl_min_protocol_version=TLSv9", '"ssl_min_protocol_version" value: "TLSv9"'),
        ("require_auth=md5", 'authentication method requirement "md5" failed'),
        ("options=-c%20no_such_setting%3D1", 'unrecognized configuration parameter "no_such'),
    ],
)
def test_asking_a_plain_server_for_what_it_cannot_do_fails_at_once(
    cluster: Cluster, query: str, fragment: str
) -> None:
    url = f"{cluster.url(cluster.create_database())}?{query}"
    result = run_job("upgrade", "head", env=job_env(url, MIGRATE_WAIT_TIMEOUT="30"))
    assert_fails_at_once(result, fragment)
    assert cluster.password not in result.stdout


def test_an_unknown_host_name_is_retried_until_the_wait_timeout() -> None:
    """In Kubernetes a Service's name resolves only once it exists: DNS converges."""
    url = "postgresql://app:pw@no-such-host.invalid:5432/app?sslmode=require"
    result = run_job("upgrade", "head", env=job_env(url, MIGRATE_WAIT_TIMEOUT="2"))
    assert result.code == 3, result.stdout
    assert result.final["error"] == "DatabaseUnavailable"
    assert len(result.named("database_unavailable")) >= 2
    assert "could not translate host name" in result.final["message"]
