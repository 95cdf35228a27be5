"""Named tokens (access, expiry, rotation), status-page sessions (cookie, expiry,
revocation), CSRF and origin checks, and the audit of HTTP reads (catalog, API, CLI)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gateway.catalog import Catalog, JobState, JobStore
from gateway.catalog.access import AccessLog, SessionStore
from gateway.catalog.schema import AccessAction
from gateway.cli.app import app as cli
from gateway.errors import ConfigError
from gateway.outbox import Outbox
from gateway.web import TokenRegistry, create_app
from support.gateway import make_settings
from support.reports import Reported

from .conftest import HTTP, OPERATOR, READER, bearer, running

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def url(reported: Reported) -> Iterator[str]:
    app = create_app(reported.catalog, reported.outbox, reported.settings)
    with running(app) as base:
        yield base


def _login(url: str, token: str = OPERATOR) -> httpx.Client:
    client = httpx.Client(base_url=url)
    response = client.post("/login", data={"token": token, "next": "/"})
    assert response.status_code == 303, response.text
    return client


def _csrf(page: httpx.Response) -> str:
    match = CSRF_RE.search(page.text)
    assert match, "no CSRF field on the page"
    return match.group(1)


def test_login_sets_an_opaque_httponly_strict_cookie(url: str) -> None:
    response = httpx.post(f"{url}/login", data={"token": OPERATOR, "next": "/"})
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("ihgamp_session=")
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "max-age", "path"} <= attributes
    assert "samesite=strict" in cookie.lower()
    value = cookie.split(";")[0].split("=", 1)[1]
    assert OPERATOR not in value and len(value) >= 40
    page = httpx.get(f"{url}/", cookies={"ihgamp_session": value})
    assert page.status_code == 200 and "signed in as <b>operator</b>" in page.text


def test_login_refuses_unknown_and_read_only_tokens(url: str) -> None:
    wrong = httpx.post(f"{url}/login", data={"token": "not-a-token-at-all"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    reader = httpx.post(f"{url}/login", data={"token": READER})
    assert reader.status_code == 403 and "set-cookie" not in reader.headers
    assert httpx.get(f"{url}/").status_code == 303  # to the login form
    login = httpx.get(f"{url}/studies/1.2.3")
    assert login.headers["location"] == "/login?next=%2Fstudies%2F1.2.3"
    # After logging in, the browser goes where it was going, and nowhere else.
    off_site = httpx.post(f"{url}/login", data={"token": OPERATOR, "next": "//evil.example/"})
    assert off_site.headers["location"] == "/"


def test_forms_need_the_session_csrf_token_and_the_same_origin(
    url: str, reported: Reported
) -> None:
    client = _login(url)
    page = client.get(f"/studies/{reported.study_uid}")
    token = _csrf(page)
    action = f"/studies/{reported.study_uid}/redispatch"
    assert client.post(action, data={"other": "1"}).status_code == 403
    assert client.post(action, data={"csrf": "forged"}).status_code == 403
    foreign = client.post(action, data={"csrf": token}, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    done = client.post(action, data={"csrf": token}, headers={"Origin": url})
    assert done.status_code == 303 and done.headers["location"].endswith("done=redispatched")
    # Another session's CSRF token is worth nothing here.
    other = _login(url)
    assert other.post(action, data={"csrf": token}).status_code == 403


def test_requeue_from_the_page_queues_a_job(url: str, reported: Reported) -> None:
    client = _login(url)
    token = _csrf(client.get("/"))
    before = len(JobStore(reported.catalog).jobs(study_uid=reported.study_uid))
    response = client.post(f"/studies/{reported.study_uid}/requeue", data={"csrf": token})
    assert response.status_code == 303
    jobs = JobStore(reported.catalog).jobs(study_uid=reported.study_uid)
    assert len(jobs) == before + 1 and jobs[0].state == JobState.QUEUED
    assert jobs[0].max_attempts == reported.settings.worker.max_attempts


def test_the_page_shows_which_node_leads_and_which_holds_each_job(
    url: str, reported: Reported
) -> None:
    """Scale-out: the completion leader and the node scoring each job, as `ihgamp status`."""
    from gateway.catalog.leases import LEADER_LEASE, NamedLease

    client = _login(url)
    assert "no job being scored" in client.get("/").text
    jobs = JobStore(reported.catalog)
    job_id = jobs.enqueue(reported.study_uid, 3, reason="rescore")
    claimed = jobs.claim_job(job_id, "gpu-node-7:4242:abcd", 60)
    assert claimed is not None
    leader = NamedLease(reported.catalog, LEADER_LEASE, "receiver-2-11112", 30)
    assert leader.acquire()
    try:
        page = client.get("/").text
        row = page[page.index('<table id="running-jobs">') :].split("</table>")[0]
        assert f"<td>{job_id}</td>" in row and "gpu-node-7:4242:abcd" in row
        assert 'Completion leader: <span class="node">receiver-2-11112</span>' in page
    finally:
        leader.release()
        jobs.finish(job_id, "gpu-node-7:4242:abcd")


def test_the_study_page_shows_each_analysis_maps_with_their_key(
    url: str, reported: Reported
) -> None:
    """A recorded result's maps: on the page with its analysis' class key; nothing else."""
    import shutil

    from gateway.analyses import entry
    from gateway.catalog import AnalysisStore, ResultManifest

    study = reported.outbox.root / reported.study_uid
    (study / "her2-A1").mkdir(exist_ok=True)
    shutil.copy(study / "hrd" / "heatmap-1.png", study / "her2-A1" / "heatmap-1.png")
    (study / "her2-A1" / "result.json").write_text("{}")
    (study / "ghost-A1").mkdir(exist_ok=True)  # a folder without a result row: not shown
    shutil.copy(study / "hrd" / "heatmap-1.png", study / "ghost-A1" / "heatmap-1.png")
    store = AnalysisStore(reported.catalog)
    result = str(study / "her2-A1" / "result.json")
    files = ("sr.dcm", "heatmap-1.dcm", "heatmap-1.png", "fhir-bundle.json")
    issued = ResultManifest("k", "her2-A1", files, "1.2.9", "1.2.9.1", "o", "o")
    store.record(
        reported.study_uid,
        "her2:A1",
        "her2",
        result,
        "her2-2+",
        0.7,
        "dual",
        "m",
        True,
        None,
        issued,
    )
    legend = entry("her2").legend
    assert legend is not None
    key_colours = legend()
    client = _login(url)
    try:
        page = client.get(f"/studies/{reported.study_uid}").text
        assert f'src="/studies/{reported.study_uid}/her2-A1/heatmap-1.png"' in page
        assert "ghost-A1/heatmap-1.png" not in page
        key = page[page.index('id="key-her2-A1"') :].split("</div>")[0]
        assert [label for label, _ in key_colours] == ["0", "1+", "2+", "3+"]
        for label, colour in key_colours:  # each swatch painted in the class map's colour
            assert f'aria-label="{label}"><title>{colour}</title>' in key
            assert f'fill="{colour}"/></svg><span>{label}<' in key
        png = client.get(f"/studies/{reported.study_uid}/her2-A1/heatmap-1.png")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        for bad in ("her2-A1/result.json", "sr/heatmap-1.png", "her2-A1/heatmap-2.png"):
            assert client.get(f"/studies/{reported.study_uid}/{bad}").status_code == 404, bad
        status = client.get("/").text  # the study list shows every analysis' call
        calls = status[status.index(reported.study_uid) :].split("</tr>")[0]
        assert 'data-job="her2:A1">her2:A1: her2-2+ (0.700) <span class="demo">DEMO' in calls
        assert 'data-job="hrd">hrd: hrd-' in calls  # HRD's call, from its row like any other
    finally:
        shutil.rmtree(study / "her2-A1")
        shutil.rmtree(study / "ghost-A1")


def test_logout_and_revocation_end_sessions_on_the_server(url: str, reported: Reported) -> None:
    client = _login(url)
    cookie = client.cookies["ihgamp_session"]
    token = _csrf(client.get("/"))
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    assert httpx.get(f"{url}/", cookies={"ihgamp_session": cookie}).status_code == 303
    # An operator revokes every session (e.g. after a token leaked).
    first, second = _login(url), _login(url)
    assert first.get("/").status_code == 200
    assert SessionStore(reported.catalog).revoke_all("operator") >= 2
    assert first.get("/").status_code == 303 and second.get("/").status_code == 303


def test_sessions_expire(reported: Reported) -> None:
    store = SessionStore(reported.catalog)
    cookie, view = store.create("operator", "127.0.0.1", 60)
    assert store.get(cookie) is not None
    assert store.get(cookie, now=view.expires_at) is None
    assert store.get(cookie + "x") is None


def test_a_session_ends_when_its_token_leaves_the_configuration(
    reported: Reported, tmp_path: Path
) -> None:
    with running(create_app(reported.catalog, reported.outbox, reported.settings)) as url:
        cookie = _login(url).cookies["ihgamp_session"]
    rotated = TokenRegistry.single("a-new-operator-token-0123")  # "operator" is gone
    app = create_app(reported.catalog, reported.outbox, reported.settings, tokens=rotated)
    with running(app) as url:
        assert httpx.get(f"{url}/", cookies={"ihgamp_session": cookie}).status_code == 303


def test_named_tokens_expire_and_rotate(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    http = {
        "tokens": [
            {"name": "ehr-2025", "token": "old-ehr-token-0123456789", "expires": now},
            {"name": "ehr-2026", "token": "new-ehr-token-0123456789"},
            {"name": "ops", "token": OPERATOR, "access": "operate"},
        ]
    }
    settings = make_settings(tmp_path, http=http)
    catalog = Catalog(settings.catalog.url)
    try:
        with running(create_app(catalog, Outbox(tmp_path / "o"), settings)) as url:
            old = httpx.get(f"{url}/api/studies", headers=bearer("old-ehr-token-0123456789"))
            assert old.status_code == 401
            new = httpx.get(f"{url}/api/studies", headers=bearer("new-ehr-token-0123456789"))
            assert new.status_code == 200
            audit = httpx.get(f"{url}/api/audit", headers=bearer(OPERATOR)).json()
            assert [e["token"] for e in audit] == ["ehr-2026"]
            refused = httpx.get(f"{url}/api/audit", headers=bearer("new-ehr-token-0123456789"))
            assert refused.status_code == 403
    finally:
        catalog.close()


def test_reads_are_audited_by_token_without_patient_identifiers(
    url: str, reported: Reported, tmp_path: Path
) -> None:
    since = dt.datetime.now(dt.UTC)
    obs_id = reported.report.ids.observation_identifier
    patient = "SYN-0001"
    httpx.get(f"{url}/fhir/Observation/{obs_id}", headers=bearer(READER))
    httpx.get(
        f"{url}/fhir/Observation",
        params={"subject:identifier": f"urn:ihgamp:issuer:IHGAMP-DEMO|{patient}"},
        headers=bearer(READER),
    )
    httpx.get(f"{url}/api/studies/{reported.study_uid}", headers=bearer(READER))
    rows = [e for e in AccessLog(reported.catalog).entries(since=since) if e.token_name == "ehr"]
    by_route = {e.route: e for e in rows}
    read = by_route["/fhir/Observation/{resource_id}"]
    assert read.action == AccessAction.READ and read.resources == (f"Observation/{obs_id}",)
    assert read.client == "127.0.0.1" and read.at >= since and read.status == 200
    search = by_route["/fhir/Observation"]
    assert search.action == AccessAction.SEARCH and search.resources == (f"Observation/{obs_id}",)
    assert by_route["/api/studies/{study_uid}"].resources == (reported.study_uid,)
    assert patient not in json.dumps([e.to_dict() for e in rows])
    # Operators see the audit with the API and the CLI.
    api = httpx.get(f"{url}/api/audit", params={"token": "ehr"}, headers=bearer(OPERATOR))
    assert {e["route"] for e in api.json()} >= set(by_route)
    config = reported.folder.parents[2] / "gateway.toml"
    result = CliRunner().invoke(cli, ["audit", "--config", str(config), "--json", "--token", "ehr"])
    assert result.exit_code == 0, result.output
    shown: list[dict[str, Any]] = json.loads(result.output)
    assert {e["route"] for e in shown} >= set(by_route)
    table = CliRunner().invoke(cli, ["audit", "--config", str(config)])
    assert table.exit_code == 0 and "ehr" in table.output


def test_the_sessions_command_lists_and_revokes(url: str, reported: Reported) -> None:
    client = _login(url)
    config = str(reported.folder.parents[2] / "gateway.toml")
    listed = CliRunner().invoke(cli, ["sessions", "--config", config])
    assert listed.exit_code == 0 and "operator" in listed.output
    revoked = CliRunner().invoke(cli, ["sessions", "--config", config, "--revoke"])
    assert revoked.exit_code == 0 and "sessions revoked" in revoked.output
    assert client.get("/").status_code == 303


def test_the_http_settings_keep_the_single_token_as_default(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, http={"token": "legacy-token-0123456789", **HTTP})
    names = [(t.name, str(t.access)) for t in settings.http.api_tokens()]
    assert names == [("default", "operate"), ("operator", "operate"), ("ehr", "read")]
    same = make_settings(tmp_path, http={"token": OPERATOR, **HTTP})
    with pytest.raises(ConfigError, match="same value"):
        TokenRegistry(same.http.api_tokens())


def test_repeated_failed_logins_back_off_per_address_and_are_audited(
    reported: Reported, caplog: pytest.LogCaptureFixture
) -> None:
    """The red-team run: 300 wrong tokens in 5 s. Now five, then a wait that doubles."""
    app = create_app(reported.catalog, reported.outbox, reported.settings)  # its own throttle
    since = dt.datetime.now(dt.UTC)
    with running(app) as base:
        attacker = httpx.Client(
            base_url=base, transport=httpx.HTTPTransport(local_address="127.0.0.3")
        )
        statuses = [
            attacker.post("/login", data={"token": f"guess-{n:04d}-xxxxxxxx", "next": "/"})
            for n in range(8)
        ]
        assert [r.status_code for r in statuses[:5]] == [401] * 5
        assert all(r.status_code == 429 for r in statuses[5:])
        assert int(statuses[-1].headers["retry-after"]) >= 1
        # Another address is not held back; the waiting one may try again after the wait.
        assert _login(base).get("/").status_code == 200
        import time

        time.sleep(int(statuses[-1].headers["retry-after"]))
        retry = attacker.post("/login", data={"token": OPERATOR, "next": "/"})
        assert retry.status_code == 303
    rows = [
        e
        for e in AccessLog(reported.catalog).entries(since=since)
        if e.action == AccessAction.LOGIN_FAILED
    ]
    assert len(rows) == 5 and {r.client for r in rows} == {"127.0.0.3"}
    warnings = [r for r in caplog.records if r.getMessage() == "status-page login failed"]
    assert len(warnings) == 5
    assert not any("guess-" in str(r.__dict__) for r in caplog.records)  # no token material


def test_the_login_back_off_is_capped_and_never_overflows() -> None:
    from gateway.web.throttle import MAX_WAIT_S, LoginThrottle

    now = [0.0]
    throttle = LoginThrottle(threshold=5, clock=lambda: now[0])
    for _ in range(5000):  # far past where 2 ** n overflows a float
        throttle.failed("10.0.0.9")
    assert throttle.wait_s("10.0.0.9") == MAX_WAIT_S
    now[0] += MAX_WAIT_S
    assert throttle.wait_s("10.0.0.9") == 0.0 and throttle.wait_s("10.0.0.8") == 0.0
    throttle.succeeded("10.0.0.9")
    assert throttle.wait_s("10.0.0.9") == 0.0
