"""The dashboard in a real browser (Playwright driving Debian's chromium) against a real API,
worker and beat on PostgreSQL and Redis: sign in with a key, watch an execution appear and
wait in the live list, see its path on the graph, resume it from the inbox with JSON, cancel
another from its page, replay a failed one from a step with a patched context, read the fleet,
and a tenant's key that does not see another tenant's execution.

The pages are photographed at 1280x800 on every run, into FLOWMONKEY_SCREENSHOTS (default: a
folder under the system's temporary directory). `FLOWMONKEY_SCREENSHOTS=docs/screenshots` makes
the README's pictures anew; by default a test run leaves the committed ones alone. A failing
test leaves a screenshot of the page in its tmp_path.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from flowmonkey_celery.core.api_keys import new_api_key
from tests.e2e.conftest import PHASE_REPORTS, FlowMonkeyCluster, settings_env
from tests.services import PostgresDatabases

pytestmark = pytest.mark.slow
FLOW = "e2e-dashboard-order"
SCREENSHOTS = Path(
    os.environ.get("FLOWMONKEY_SCREENSHOTS")
    or Path(tempfile.gettempdir()) / "flowmonkey-dashboard-screenshots"
).resolve()
VIEWPORT = {"width": 1280, "height": 800}
WAIT_MS = 30_000  # a worker or the live refresh must act within this


class Deployment:
    """The API's URL, the keys, and a client that starts executions through the API."""

    def __init__(self, cluster: FlowMonkeyCluster, base: str) -> None:
        self.cluster = cluster
        self.base = base
        store = cluster.client.runtime.store
        self.keys: dict[str, str] = {}
        for name, scope in (
            ("ops", {"admin": True}),
            ("acme-ops", {"tenant_id": "acme"}),
            ("globex-ops", {"tenant_id": "globex"}),
        ):
            issued = new_api_key(name, datetime.now(UTC), **scope)
            store.save_api_key(issued.record)
            self.keys[name] = issued.key

    def start(self, order: dict[str, Any], key: str = "acme-ops", **fields: Any) -> str:
        response = requests.post(
            f"{self.base}/executions",
            json={"flow_id": FLOW, "context": {"order": order}, **fields},
            headers={"Authorization": f"Bearer {self.keys[key]}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        execution_id: str = response.json()["execution"]["id"]
        return execution_id

    def status(self, execution_id: str) -> str:
        execution = self.cluster.client.get(execution_id)
        assert execution is not None
        return execution.status.value

    def wait_status(self, execution_id: str, status: str) -> None:
        self.cluster.wait_for(
            lambda: self.status(execution_id) == status,
            timeout=WAIT_MS / 1000,
            what=f"execution {execution_id} to be {status}",
        )


@pytest.fixture(scope="module")
def deployment(
    postgres: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """One database, worker, beat and API for the whole module, with a few executions done."""
    home = tmp_path_factory.mktemp("dashboard")
    with postgres.database() as url:
        cluster = FlowMonkeyCluster(
            settings_env(home=home, database_url=url, broker="redis"), home, "redis"
        )
        try:
            cluster.start_worker(concurrency=2)
            cluster.start_beat()
            running = Deployment(cluster, cluster.start_api())
            done = [
                running.start({"id": f"A-{n}", "total": 20 + n, "card": "valid"})
                for n in range(1, 5)
            ]
            done.append(running.start({"id": "A-5", "total": 35, "card": "expired"}))
            cluster.wait_finished(done, timeout=WAIT_MS / 1000)
            yield running
        finally:
            cluster.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = os.environ.get("FLOWMONKEY_CHROMIUM", "/usr/bin/chromium")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage: signed out) at 1280x800; a failing test leaves
    a screenshot of it, and what the page logged, in its tmp_path."""
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    tab = context.new_page()
    logged: list[str] = []
    tab.on("console", lambda message: logged.append(f"{message.type}: {message.text}"))
    tab.on("pageerror", lambda error: logged.append(f"page error: {error}"))
    tab.set_default_timeout(WAIT_MS)
    yield tab
    report = request.node.stash.get(PHASE_REPORTS, {}).get("call")
    if report is not None and report.failed:
        shot = tmp_path / "failure.png"
        tab.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failing page: {shot}\nbrowser console:\n" + "\n".join(logged))
    context.close()
    assert not [line for line in logged if line.startswith("page error")], logged


def sign_in(page: Page, deployment: Deployment, key: str = "acme-ops") -> None:
    page.goto(f"{deployment.base}/ui")
    page.fill("input[name=api-key]", deployment.keys[key])
    page.click("button[type=submit]")
    expect(page.locator(".who-name")).to_contain_text(key)


def photograph(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)  # no hover effect in the picture
    page.evaluate("document.querySelector('.toasts')?.remove()")  # nor a passing notice
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def count_of(page: Page, status: str) -> int:
    text = page.locator(f".status-card[data-status={status}] .status-card-count").inner_text()
    return int(text.replace(",", ""))


def open_execution(page: Page, deployment: Deployment, execution_id: str) -> None:
    page.goto(f"{deployment.base}/ui/#/executions/{execution_id}")
    expect(page.locator(".detail-head .subtitle")).to_contain_text(execution_id)


# -- the tests -------------------------------------------------------------------------------


def test_a_key_signs_in_and_a_new_execution_shows_up_waiting_in_the_live_list(
    page: Page, deployment: Deployment
) -> None:
    page.goto(f"{deployment.base}/ui")
    page.fill("input[name=api-key]", f"fmk_{uuid.uuid4().hex}")
    page.click("button[type=submit]")
    expect(page.locator(".signin-error")).to_contain_text("unknown API key")

    sign_in(page, deployment)
    expect(page.locator(".status-card[data-status=completed] .status-card-count")).not_to_have_text(
        "0"
    )
    waiting_before = count_of(page, "waiting")
    execution_id = deployment.start({"id": "B-1", "total": 250, "card": "valid"})

    # No reload: the list and its counts refresh themselves.
    row = page.locator(f"tr[data-id='{execution_id}']")
    expect(row).to_have_attribute("data-status", "waiting", timeout=WAIT_MS)
    expect(row).to_contain_text("Approve order B-1 (250 EUR)")
    expect(page.locator(".status-card[data-status=waiting] .status-card-count")).to_have_text(
        str(waiting_before + 1)
    )
    assert page.locator("tbody tr").first.get_attribute("data-id") == execution_id  # newest first
    photograph(page, "executions")

    row.click()
    expect(page.locator(".detail-head .badge")).to_have_text("waiting")
    graph = page.locator(".flow-graph")
    for step in ("prepare", "route"):
        expect(graph.locator(f".node[data-step={step}]")).to_have_class(re.compile(r"\bvisited\b"))
    expect(graph.locator(".node[data-step=approve]")).to_have_class(re.compile("current-waiting"))
    expect(graph.locator(".node[data-step=check]")).to_have_class(re.compile(r"\bunvisited\b"))
    expect(graph.locator("path.edge.taken[data-edge='prepare>route']")).to_have_count(1)
    expect(graph.locator("path.edge.taken[data-edge='route>approve']")).to_have_count(1)
    expect(graph.locator("path.edge.taken[data-edge='route>check']")).to_have_count(0)
    expect(page.locator(".alert.waiting")).to_contain_text("Approve order B-1")


def test_a_waiting_execution_is_resumed_from_the_inbox_with_json_and_completes(
    page: Page, deployment: Deployment
) -> None:
    execution_id = deployment.start({"id": "C-7", "total": 480, "card": "valid"})
    deployment.wait_status(execution_id, "waiting")
    sign_in(page, deployment)
    page.click("a[data-nav=inbox]")
    card = page.locator(f".inbox-card[data-id='{execution_id}']")
    expect(card).to_contain_text("Approve order C-7 (480 EUR)")
    expect(card).to_contain_text("Manager approval")
    expect(card.locator(".deadline")).to_contain_text("in 59 min")
    photograph(page, "inbox")

    card.locator("button", has_text="Resume").click()
    dialog = page.locator("dialog")
    submit = dialog.locator(".dialog-actions .button.primary")
    dialog.locator("textarea").fill('{"approved": true, "by": ')
    expect(dialog.locator(".json-status")).to_contain_text("not valid JSON")
    expect(submit).to_be_disabled()
    dialog.locator("textarea").fill('{"approved": true, "by": "e2e"}')
    expect(dialog.locator(".json-status")).to_have_text("valid JSON")
    submit.click()

    expect(card).to_have_count(0)
    deployment.wait_status(execution_id, "completed")
    finished = deployment.cluster.client.get(execution_id)
    assert finished is not None and finished.context["approval"] == {"approved": True, "by": "e2e"}
    open_execution(page, deployment, execution_id)
    expect(page.locator(".detail-head .badge")).to_have_text("completed")
    expect(page.locator(".flow-graph .node.end")).to_have_class(re.compile(r"\bvisited\b"))
    expect(page.locator(".flow-graph path.edge.taken[data-edge='ship>end']")).to_have_count(1)
    expect(page.locator(".tl-item.wait")).to_contain_text("resumed by signal")
    page.locator(".tl-item.attempt[data-step=check] .tl-head").click()
    expect(page.locator(".attempt-detail").first).to_contain_text('"by": "e2e"')
    photograph(page, "execution")


def test_an_execution_is_cancelled_from_its_page(page: Page, deployment: Deployment) -> None:
    execution_id = deployment.start({"id": "D-2", "total": 999, "card": "valid"})
    deployment.wait_status(execution_id, "waiting")
    sign_in(page, deployment)
    open_execution(page, deployment, execution_id)

    page.locator(".detail-head button", has_text="Cancel").click()
    page.fill("dialog input[name=reason]", "the customer called")
    page.locator("dialog .button.danger").click()

    expect(page.locator(".detail-head .badge")).to_have_text("cancelled")
    expect(page.locator(".alert", has_text="Cancelled by api")).to_contain_text(
        "the customer called"
    )
    expect(page.locator(".detail-head button", has_text="Resume")).to_have_count(0)
    assert deployment.status(execution_id) == "cancelled"


def test_a_failed_execution_is_replayed_from_a_step_with_a_patched_context(
    page: Page, deployment: Deployment
) -> None:
    failed = deployment.start({"id": "E-3", "total": 40, "card": "expired"})
    deployment.wait_status(failed, "failed")
    sign_in(page, deployment)
    open_execution(page, deployment, failed)
    expect(page.locator(".alert.bad")).to_contain_text("NO_MATCH")
    expect(page.locator(".flow-graph .node[data-step=check]")).to_have_class(
        re.compile("current-failed")
    )

    page.locator(".detail-head button", has_text="Replay from a step").click()
    dialog = page.locator("dialog")
    expect(dialog.locator("select[name=from_step]")).to_have_value("check")  # where it failed
    expect(dialog.locator(".replay-grid .pane").first).to_contain_text('"card": "expired"')
    dialog.locator("textarea").fill('{\n  "order": {"card": "valid"},\n  "note": "card updated"\n}')
    preview = dialog.locator(".replay-grid .pane").nth(2)
    expect(preview).to_contain_text('"card": "valid"')
    expect(preview).to_contain_text('"total": 40')
    photograph(page, "replay")
    dialog.locator(".dialog-actions .button.primary").click()

    expect(page).not_to_have_url(re.compile(re.escape(failed)))
    replay_id = page.url.rsplit("/", 1)[-1]
    deployment.wait_status(replay_id, "completed")
    expect(page.locator(".detail-head .badge")).to_have_text("completed")
    replay_of = page.locator(".fact", has_text="Replay of")
    expect(replay_of).to_contain_text("check")
    replay_of.locator("a").click()
    expect(page.locator(".detail-head .subtitle")).to_contain_text(failed)
    expect(page.locator(".fact", has_text="Replays").locator("a")).to_have_attribute(
        "title", replay_id
    )
    replayed = deployment.cluster.client.get(replay_id)
    assert replayed is not None and replayed.context["order"]["card"] == "valid"
    assert replayed.metadata["replay_of"] == failed
    assert deployment.status(failed) == "failed"  # the original is untouched


def test_the_fleet_shows_the_tick_the_worker_and_the_queues(
    page: Page, deployment: Deployment
) -> None:
    sign_in(page, deployment, "ops")
    page.click("a[data-nav=fleet]")

    expect(page.locator(".stat", has_text="Last tick")).not_to_contain_text("never")
    expect(page.locator(".stat", has_text="Workers alive").locator(".stat-value")).to_have_text("1")
    expect(page.locator(".card", has_text="Workers").locator(".health.ok")).to_have_count(1)
    queue = deployment.cluster.queue
    expect(page.locator(".card", has_text="Queues").locator("td", has_text=queue)).to_have_count(2)
    photograph(page, "fleet")


def test_a_tenant_key_does_not_see_another_tenants_execution(
    page: Page, deployment: Deployment
) -> None:
    theirs = deployment.start({"id": "G-1", "total": 700, "card": "valid"}, key="globex-ops")
    deployment.wait_status(theirs, "waiting")
    sign_in(page, deployment, "acme-ops")

    expect(page.locator("tbody tr").first).to_be_visible()
    expect(page.locator(f"tr[data-id='{theirs}']")).to_have_count(0)
    page.fill("input[name=q]", theirs)
    page.press("input[name=q]", "Enter")
    expect(page.locator(".empty")).to_contain_text("No executions match")
    open_execution_refused = f"{deployment.base}/ui/#/executions/{theirs}"
    page.goto(open_execution_refused)
    expect(page.locator(".error-box")).to_contain_text("EXECUTION_NOT_FOUND")
    page.goto(f"{deployment.base}/ui/#/inbox")
    expect(page.locator(".inbox-list")).not_to_contain_text("G-1")
    page.goto(f"{deployment.base}/ui/#/fleet")
    expect(page.locator(".empty")).to_contain_text("needs an admin API key")
