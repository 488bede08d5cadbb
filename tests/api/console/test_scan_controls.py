"""The console's run-now and cancel buttons in headless Chromium: an operator runs a schedule now
and cancels a run from its page; both are the API's own actions (run-now, cancel), carry the
page's CSRF token, and are neither shown to nor accepted from roles that may not use them."""

from playwright.sync_api import Page, expect
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.schedules import RunTrigger, Schedule, ScheduleRun
from tests.api.console.conftest import Shoot, SignIn, follow
from tests.api.console.plant import Plant


def _queued_run(engine: Engine, plant: Plant) -> str:
    """A run of the water organisation that no process has claimed yet."""
    with Session(engine) as session:
        run = ScanRun(
            status=ScanStatus.QUEUED,
            targets=["127.40.14.98"],
            ports=[502],
            requested_by="token:operator-water",
            organization_id=plant.org,
        )
        session.add(run)
        session.commit()
        return run.id


def _run(engine: Engine, run_id: str) -> ScanRun:
    with Session(engine) as session:
        run = session.get(ScanRun, run_id)
        assert run is not None
        return run


def _manual_decisions(engine: Engine, plant: Plant) -> list[ScheduleRun]:
    with Session(engine) as session:
        query = select(ScheduleRun).where(
            ScheduleRun.schedule_id == plant.schedule, ScheduleRun.trigger == RunTrigger.MANUAL
        )
        return list(session.exec(query).all())


def test_operator_runs_a_schedule_now_and_opens_its_scan(
    server: str, page: Page, sign_in: SignIn, plant: Plant, engine: Engine, shoot: Shoot
) -> None:
    # One address and one port inside the schedule's scope: the scan it starts is small.
    with Session(engine) as session:
        schedule = session.get(Schedule, plant.schedule)
        assert schedule is not None
        schedule.targets, schedule.ports = ["127.40.14.97"], [502]
        session.add(schedule)
        session.commit()
    sign_in(plant.tokens["operator"])
    page.goto(f"{server}/console/schedules/{plant.schedule}")
    follow(page, "#run-now")
    expect(page.locator("#notice")).to_have_text("run now: started")
    newest = page.locator("#decisions tbody tr").first
    expect(newest).to_contain_text("manual (token:operator-water)")
    expect(newest).to_contain_text("started")
    shoot("schedule-run-now")
    (decision,) = _manual_decisions(engine, plant)
    assert decision.scan_run_id is not None
    follow(page, "#decisions tbody tr >> nth=0 >> a")
    expect(page.locator("h1")).to_have_text("Scan of 127.40.14.97")
    assert _run(engine, decision.scan_run_id).requested_by.startswith("schedule")


def test_operator_cancels_a_run_from_its_page(
    server: str, page: Page, sign_in: SignIn, plant: Plant, engine: Engine, shoot: Shoot
) -> None:
    run_id = _queued_run(engine, plant)
    sign_in(plant.tokens["operator"])
    page.goto(f"{server}/console/scans/{run_id}")
    expect(page.locator("#run-status")).to_have_text("queued")
    follow(page, "#cancel-scan")
    expect(page.locator("#notice")).to_have_text("scan cancelled")
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(page.locator("#errors")).to_contain_text(
        "cancelled by token:operator-water (it had not started)"
    )
    expect(page.locator("#cancel-scan")).to_have_count(0)  # finished: nothing to cancel
    shoot("scan-cancelled")
    assert _run(engine, run_id).status is ScanStatus.CANCELLED


def test_cancel_of_a_run_that_ended_meanwhile_changes_nothing(
    server: str, page: Page, sign_in: SignIn, plant: Plant, engine: Engine
) -> None:
    sign_in(plant.tokens["operator"])
    page.goto(f"{server}/console/scans/{_queued_run(engine, plant)}")
    expect(page.locator("#cancel-scan")).to_be_visible()
    # The page's own form pointed at the plant's run, which has ended: what a click on a page
    # drawn before its run ended sends.
    page.evaluate(
        "(id) => { document.getElementById('cancel-form').action = "
        "`/console/scans/${id}/cancel`; }",
        plant.scan,
    )
    with page.expect_response(f"{server}/console/scans/{plant.scan}/cancel") as posted:
        follow(page, "#cancel-scan")
    assert posted.value.status == 409
    expect(page.locator("#error")).to_contain_text("nothing changed: scan run")
    expect(page.locator("#error")).to_contain_text("already finished (partial)")
    assert _run(engine, plant.scan).status is ScanStatus.PARTIAL


def test_cancel_without_the_pages_csrf_token_is_refused(
    server: str, page: Page, sign_in: SignIn, plant: Plant, engine: Engine
) -> None:
    run_id = _queued_run(engine, plant)
    sign_in(plant.tokens["operator"])
    page.goto(f"{server}/console/scans/{run_id}")
    page.evaluate("document.querySelector('#cancel-form input[name=csrf]').value = 'forged'")
    with page.expect_response(f"{server}/console/scans/{run_id}/cancel") as posted:
        follow(page, "#cancel-scan")
    assert posted.value.status == 403
    expect(page.locator("#error")).to_contain_text("form expired")
    assert _run(engine, run_id).status is ScanStatus.QUEUED


def test_analyst_sees_no_run_now_or_cancel_and_cannot_post_them(
    server: str, page: Page, sign_in: SignIn, plant: Plant, engine: Engine
) -> None:
    run_id = _queued_run(engine, plant)
    sign_in(plant.tokens["analyst"])
    page.goto(f"{server}/console/schedules/{plant.schedule}")
    expect(page.locator("#decisions tbody tr")).to_have_count(2)
    expect(page.locator("#run-now")).to_have_count(0)
    page.goto(f"{server}/console/scans/{run_id}")
    expect(page.locator("#run-status")).to_have_text("queued")
    expect(page.locator("#cancel-scan")).to_have_count(0)
    # The analyst's own session and the page's origin, but a role that may not: 403 each.
    statuses = page.evaluate(
        """async ([run, schedule]) => {
             const post = async (url) => (await fetch(url, {method: 'POST',
               body: new URLSearchParams({csrf: 'guess'})})).status;
             return [await post(`/console/scans/${run}/cancel`),
                     await post(`/console/schedules/${schedule}/run`)]; }""",
        [run_id, plant.schedule],
    )
    assert statuses == [403, 403]
    assert _run(engine, run_id).status is ScanStatus.QUEUED
    assert _manual_decisions(engine, plant) == []
