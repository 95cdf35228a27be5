"""Every command opens the catalog as ``serve`` does: with ``catalog.password_file``.

The test PostgreSQL trusts its users; one role here must give a password
(``scram-sha-256`` for it alone in ``pg_hba.conf``), so a command that connects with
``catalog.url`` alone is refused by the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from gateway.cli.app import app
from support.gateway import settings_dict, write_toml

pytestmark = pytest.mark.integration

ROLE = "ihgamp_pw"
PASSWORD = "Pw-only-in-a-file-7"  # noqa: S105 - a test server's throwaway password


@pytest.fixture()
def password_url(postgres_url: str) -> Iterator[str]:
    """A database whose owner must authenticate with a password; its URL has none."""
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        hba = Path(str(conn.execute(text("SHOW hba_file")).scalar()))
        conn.execute(text(f"DROP DATABASE IF EXISTS {ROLE}"))
        conn.execute(text(f"DROP ROLE IF EXISTS {ROLE}"))
        conn.execute(text(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'"))
        conn.execute(text(f"CREATE DATABASE {ROLE} OWNER {ROLE}"))
        original = hba.read_text()
        hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n{original}")
        conn.execute(text("SELECT pg_reload_conf()"))
    port = re.search(r"@127\.0\.0\.1:(\d+)/", postgres_url)
    assert port is not None
    try:
        yield f"postgresql+psycopg://{ROLE}@127.0.0.1:{port.group(1)}/{ROLE}"
    finally:
        with admin.connect() as conn:
            hba.write_text(original)
            conn.execute(text("SELECT pg_reload_conf()"))
            conn.execute(text(f"DROP DATABASE IF EXISTS {ROLE} WITH (FORCE)"))
            conn.execute(text(f"DROP ROLE IF EXISTS {ROLE}"))
        admin.dispose()


def test_audit_sessions_and_status_read_the_catalog_password_file(
    password_url: str, tmp_path: Path
) -> None:
    without = create_engine(password_url)
    with pytest.raises(OperationalError, match="password"):  # the URL alone is refused
        without.connect().close()
    without.dispose()
    secret = tmp_path / "db_password"
    secret.write_text(PASSWORD + "\n")
    config = write_toml(
        tmp_path / "gateway.toml",
        settings_dict(tmp_path, catalog={"url": password_url, "password_file": str(secret)}),
    )
    runner = CliRunner()
    upgraded = runner.invoke(app, ["db", "upgrade", "--config", str(config)])
    assert upgraded.exit_code == 0, upgraded.output
    for command in (["audit", "--json"], ["sessions"], ["status", "--json"]):
        result = runner.invoke(app, [*command, "--config", str(config)])
        assert result.exit_code == 0, (command, result.output)
        assert PASSWORD not in result.output
