"""``cno-tracker users`` as an administrator runs it (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from tracker.cli.main import cli

ROSTER = """
[[staff]]
id = "nurse.lopez"
name = "A. López"
roles = ["nurse"]
email = "a.lopez@example.org"
preferred_channel = "email"

[routing]
default = ["nurse"]
"""


class Cli:
    def __init__(self, db_url: str, **env: str) -> None:
        self.env = {"CNO_TRACKER_DATABASE_URL": db_url, **env}
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, code: int = 0) -> Result:
        result = self.runner.invoke(cli, ["users", *args], env=self.env, input=input)
        assert result.exit_code == code, result.output
        return result


@pytest.fixture
def users(db_url: str, tmp_path: Path) -> Cli:
    roster = tmp_path / "roster.toml"
    roster.write_text(ROSTER, encoding="utf-8")
    return Cli(db_url, CNO_TRACKER_ROSTER_FILE=str(roster))


def test_add_list_disable_and_set_password(users: Cli) -> None:
    out = users("add", "lopez", "--role", "nurse", "--member", "nurse.lopez",
                "--password-stdin", input="a long enough secret\n")
    assert out.stdout == "account lopez created (nurse)\n"
    users("add", "audit1", "--role", "auditor", input="another long secret\n"
          "another long secret\n")  # the prompt asks twice
    rows = orjson.loads(users("list", "--json").stdout)
    assert [(r["username"], r["role"], r["member"], r["state"]) for r in rows] == [
        ("audit1", "auditor", None, "active"), ("lopez", "nurse", "nurse.lopez", "active")]
    assert "lopez" in users("list").stdout
    assert users("disable", "lopez", "--reason", "left").stdout == "account lopez disabled\n"
    assert "was disabled already" in users("disable", "lopez").stdout
    assert "disabled" in users("list").stdout
    assert users("set-password", "audit1", "--password-stdin",
                 input="a third long secret\n").stdout == "password of audit1 changed\n"
    assert "now clinician" in users("set-role", "audit1", "--role", "clinician").stdout


def test_errors_are_one_line_with_the_documented_exit_code(users: Cli) -> None:
    users("add", "lopez", "--role", "nurse", "--password-stdin", input="a long enough secret\n")
    dup = users("add", "lopez", "--role", "nurse", "--password-stdin",
                input="a long enough secret\n", code=3)
    assert dup.stderr == "error: account 'lopez' exists already\n"
    short = users("add", "ruiz", "--role", "nurse", "--password-stdin", input="short\n", code=2)
    assert short.stderr == "error: password: at least 12 characters\n"
    member = users("add", "ruiz", "--role", "nurse", "--member", "ghost", "--password-stdin",
                   input="a long enough secret\n", code=2)
    assert "no such staff id in the roster" in member.stderr
    assert "Traceback" not in member.output
    users("add", "ruiz", "--role", "surgeon", "--password-stdin", input="x\n", code=2)
    missing = users("disable", "ghost", code=4)
    assert missing.stderr == "error: no account 'ghost'\n"
    users("set-password", "ghost", "--password-stdin", input="a long enough secret\n", code=4)
    names = [r["username"] for r in orjson.loads(users("list", "--json").stdout)]
    assert names == ["lopez"]


def test_the_password_never_appears_in_the_output(users: Cli) -> None:
    result = users("add", "lopez", "--role", "nurse", "--password-stdin",
                   input="a long enough secret\n")
    assert "a long enough secret" not in result.output
    assert "a long enough secret" not in users("list", "--json").output


def test_an_integration_account_gets_a_token_once_and_only_its_hash_is_kept(
        users: Cli, db_url: str) -> None:
    import hashlib

    from sqlalchemy import select

    from events.store.engine import make_engine
    from tracker.account_tables import accounts, api_tokens

    out = users("add", "lab-feed", "--role", "integration")
    created, token = out.stdout.splitlines()
    assert created == "account lab-feed created (integration)"
    assert token.startswith("cnot_") and len(token) == 5 + 43  # 256 random bits
    assert "shown once" in out.stderr
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(select(api_tokens.c.token_sha256)).scalars().all()
            hashes = conn.execute(select(accounts.c.password_hash)).scalars().all()
    finally:
        engine.dispose()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in repr(hashes)
    assert token not in users("list", "--json").output
    rotated = users("token", "lab-feed", "--rotate").stdout.strip()
    assert rotated.startswith("cnot_") and rotated != token
    assert users("token", "lab-feed", "--revoke").stdout == "revoked 1 token(s) of lab-feed\n"
    assert users("token", "lab-feed", "--revoke").stdout == "revoked 0 token(s) of lab-feed\n"
    # a machine account has no password, and a human account no token
    users("add", "feed2", "--role", "integration", "--password-stdin", input="x" * 20 + "\n",
          code=2)
    users("add", "lopez", "--role", "nurse", "--password-stdin", input="a long enough secret\n")
    refused = users("token", "lopez", "--rotate", code=2)
    assert refused.stderr == "error: account 'lopez' is not an integration account\n"
    users("set-role", "lopez", "--role", "integration", code=2)
    users("token", "ghost", "--rotate", code=4)
