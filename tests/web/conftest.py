"""The web harness: the real app over a migrated database of each kind (``db_url``), a
fixed clock, real accounts (argon2id with cheap parameters), and clients logged in through
the real ``POST /login``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerts.roster import Roster, load_roster
from tests.web.scenario import TODAY, import_ward
from tracker.accounts import Accounts
from tracker.bootstrap import App, bootstrap
from tracker.clock import FixedClock
from tracker.settings import Settings
from web.app import create_app
from web.settings import WebSettings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_ROSTER = ROOT / "examples" / "roster.toml"
PASSWORD = "correct horse battery staple"
#: roster ids the test accounts are linked to, by role
MEMBERS = {"nurse": "nurse.lopez", "clinician": "rheum.garcia", "pharmacist": "pharm.martin"}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no csrf_token input on the page"
    return found.group(1)


@dataclass
class WebHarness:
    app: FastAPI
    core: App
    clock: FixedClock
    accounts: Accounts
    roster: Roster
    clients: list[TestClient] = field(default_factory=list)

    def add_user(self, username: str, role: str, *, member: str | None = None) -> str:
        self.accounts.add(username, role, PASSWORD, member=member, by="test")
        return PASSWORD

    def login(self, client: TestClient, username: str, password: str = PASSWORD,
              next_: str = "/") -> object:
        form = client.get("/login")
        return client.post("/login", data={
            "username": username, "password": password, "csrf_token": csrf_of(form.text),
            "next": next_}, follow_redirects=False)

    def anonymous(self, **kwargs: object) -> TestClient:
        client = TestClient(self.app, **kwargs)  # type: ignore[arg-type]
        self.clients.append(client)
        return client

    def client(self, role: str) -> TestClient:
        """A client logged in as the user named after ``role`` (made on first use)."""
        if self.accounts.get(role) is None:
            self.add_user(role, role, member=MEMBERS.get(role))
        client = self.anonymous()
        response = self.login(client, role)
        assert response.status_code == 303, response.text  # type: ignore[attr-defined]
        return client

    def machine(self, username: str = "integration") -> tuple[TestClient, str]:
        """A client sending the API token of an integration account (made on first use)."""
        if self.accounts.get(username) is None:
            _, token = self.accounts.add_integration(username, by="test")
        else:
            token = self.accounts.rotate_token(username, by="test")
        client = self.anonymous(headers={"Authorization": f"Bearer {token}"})
        return client, token

    def import_ward(self) -> None:
        """The small ward of :mod:`tests.web.scenario` (an overdue item on W-0001)."""
        import_ward(self.core, self.clock)

    def raise_alerts(self) -> list[str]:
        """One cycle of the real alert worker (console channel): the alert ids raised."""
        from alerts.channels.console import ConsoleChannel
        from alerts.outbox import Outbox
        from alerts.wiring import build_worker

        with build_worker(self.core, channels={"console": ConsoleChannel()},
                          roster=self.roster) as worker:
            worker.run_once()
        with self.core.engine.connect() as conn:
            return [a.alert_id for a in Outbox(self.core.store, self.core.protocol.zone)
                    .alerts(conn)]


@pytest.fixture
def web(db_url: str) -> Iterator[WebHarness]:
    clock = FixedClock(TODAY)
    core = bootstrap(Settings(database_url=db_url), clock=clock)
    accounts = Accounts(core.engine, core.store, clock,
                        hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    roster = load_roster(EXAMPLE_ROSTER)
    # tests write behind the app's back (import_lines on the store), which a production
    # process sees within CNO_TRACKER_WARD_REFRESH_SECONDS: here, at the next request
    app = create_app(core, WebSettings(ward_refresh_seconds=0), accounts=accounts,
                     roster=roster)
    harness = WebHarness(app, core, clock, accounts, roster)
    yield harness
    for client in harness.clients:
        client.close()
    core.close()
