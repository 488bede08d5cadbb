"""The console's findings page in headless Chromium: sorted by score, each filter, bulk triage
(acknowledge, accept with expiry, false positive) with its reason in the audit trail, one
transaction per bulk, and triage only for the roles that may, from this site's own form."""

from playwright.sync_api import Page, expect
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cybermission.findings.models import Finding, FindingStatus, FindingTransition
from tests.api.console.conftest import Shoot, SignIn, follow
from tests.api.console.plant import Plant


def _ids(page: Page) -> list[str]:
    return page.locator("#findings tbody tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )


def _status(engine: Engine, finding_id: str) -> FindingStatus:
    with Session(engine) as session:
        finding = session.get(Finding, finding_id)
        assert finding is not None
        return finding.status


def test_findings_are_sorted_by_score_highest_first(
    server: str, page: Page, sign_in: SignIn, plant: Plant, shoot: Shoot
) -> None:
    sign_in()
    page.goto(f"{server}/console/findings")
    f = plant.findings
    # The other organisation's finding (9.5) is not there.
    assert _ids(page) == [f["modbus"], f["advisory"], f["wago"], f["resolved"], f["http"], f["s7"]]
    row = page.locator(f"#findings tr[data-id='{f['modbus']}']").inner_text()
    for text in ("9.1", "critical", "Schneider Electric BMX P34 2020", "127.40.14.11:502"):
        assert text in row, (text, row)
    shoot("findings")
    page.select_option("#sort", "score")
    follow(page, "#finding-filters button[type=submit]")
    assert _ids(page)[0] == f["s7"]


def test_findings_filters_each_narrow_the_list(
    server: str, page: Page, sign_in: SignIn, plant: Plant
) -> None:
    sign_in()
    f = plant.findings
    page.goto(f"{server}/console/findings")
    page.check("#finding-filters input[name=severity][value=critical]")
    follow(page, "#finding-filters button[type=submit]")
    assert _ids(page) == [f["modbus"]]
    page.goto(f"{server}/console/findings")
    page.check("#finding-filters input[name=status][value=resolved]")
    follow(page, "#finding-filters button[type=submit]")
    assert _ids(page) == [f["resolved"]]
    page.goto(f"{server}/console/findings")
    page.select_option("#site", label="Pumping South")
    follow(page, "#finding-filters button[type=submit]")
    assert _ids(page) == [f["wago"]]
    page.goto(f"{server}/console/findings")
    page.fill("#min-score", "7")
    page.fill("#protocol", "modbus")
    follow(page, "#protocol", key="Enter")
    assert _ids(page) == [f["modbus"], f["wago"]]
    # From the device page: that device's findings only.
    page.goto(f"{server}/console/assets/{plant.plc}")
    follow(page, "text=all findings of this device")
    assert _ids(page) == [f["modbus"], f["advisory"], f["http"]]


def _pick(page: Page, *finding_ids: str) -> None:
    for finding_id in finding_ids:
        page.check(f"#pick-{finding_id}")


def test_bulk_triage_acknowledges_accepts_and_marks_false_positive(
    server: str, page: Page, sign_in: SignIn, plant: Plant, engine: Engine, shoot: Shoot
) -> None:
    sign_in()
    f = plant.findings
    page.goto(f"{server}/console/findings?severity=critical&severity=high")
    _pick(page, f["modbus"], f["wago"])
    page.select_option("#action", "acknowledge")
    page.fill("#reason", "vendor ticket 4411 opened")
    follow(page, "#apply-triage")
    expect(page.locator("#notice")).to_have_text("2 findings triaged")
    assert "severity=critical" in page.url  # back to the same filtered list
    for key in ("modbus", "wago"):
        expect(page.locator(f"#findings tr[data-id='{f[key]}'] .status")).to_have_text(
            "acknowledged"
        )
    shoot("findings-triaged")
    _pick(page, f["advisory"])
    page.select_option("#action", "accept")
    page.fill("#until", "2030-06-30")
    page.fill("#reason", "segmented; replacement planned")
    follow(page, "#apply-triage")
    expect(page.locator("#notice")).to_have_text("1 finding triaged")
    expect(page.locator(f"#findings tr[data-id='{f['advisory']}'] .status")).to_contain_text(
        "until 2030-06-30 00:00:00"
    )
    page.goto(f"{server}/console/findings")
    _pick(page, f["http"])
    page.select_option("#action", "false-positive")
    page.fill("#reason", "the web server is disabled; banner cached by a proxy")
    follow(page, "#apply-triage")
    expect(page.locator("#notice")).to_have_text("1 finding triaged")
    assert _status(engine, f["http"]) is FindingStatus.FALSE_POSITIVE
    with Session(engine) as session:
        trail = session.exec(
            select(FindingTransition)
            .where(FindingTransition.finding_id == f["advisory"])
            .order_by(col(FindingTransition.at))
        ).all()
    seen, accepted = trail
    assert seen.to_status is FindingStatus.OPEN
    assert accepted.to_status is FindingStatus.RISK_ACCEPTED
    assert accepted.reason == "segmented; replacement planned"
    assert accepted.actor == "token:analyst-water"
    assert accepted.until is not None
    assert accepted.until.isoformat() == "2030-06-30T00:00:00+00:00"


def test_bulk_triage_moves_none_when_one_may_not_move(
    server: str, page: Page, sign_in: SignIn, plant: Plant, engine: Engine
) -> None:
    sign_in()
    f = plant.findings
    page.goto(f"{server}/console/findings")
    _pick(page, f["modbus"], f["resolved"])  # a resolved finding cannot be acknowledged
    page.fill("#reason", "looked at it")
    follow(page, "#apply-triage")
    expect(page.locator("#error")).to_contain_text("nothing changed")
    expect(page.locator("#error")).to_contain_text("An old S7 finding")
    assert _status(engine, f["modbus"]) is FindingStatus.OPEN


def test_bulk_triage_needs_a_reason_and_an_expiry(
    server: str, page: Page, sign_in: SignIn, plant: Plant, engine: Engine
) -> None:
    sign_in()
    f = plant.findings
    page.goto(f"{server}/console/findings")
    # The browser asks for the reason itself; the server refuses too when it is bypassed.
    page.evaluate("document.getElementById('reason').removeAttribute('required')")
    _pick(page, f["modbus"])
    follow(page, "#apply-triage")
    expect(page.locator("#error")).to_contain_text("reason: say why")
    _pick(page, f["modbus"])
    page.select_option("#action", "accept")
    page.fill("#reason", "accepted")
    follow(page, "#apply-triage")
    expect(page.locator("#error")).to_contain_text("until: a risk acceptance needs the date")
    assert _status(engine, f["modbus"]) is FindingStatus.OPEN


def test_viewer_sees_no_triage_and_cannot_post_one(
    server: str, page: Page, sign_in: SignIn, plant: Plant, engine: Engine
) -> None:
    sign_in(plant.tokens["viewer"])
    page.goto(f"{server}/console/findings")
    expect(page.locator("#findings tbody tr[data-id]")).to_have_count(6)
    expect(page.locator("#triage")).to_have_count(0)
    expect(page.locator("input[name=finding_id]")).to_have_count(0)
    expect(page.locator("button", has_text="Apply to selected")).to_have_count(0)
    status = page.evaluate(
        """async (id) => (await fetch('/console/findings/triage', {method: 'POST',
             body: new URLSearchParams({finding_id: id, action: 'acknowledge', reason: 'x',
                                        csrf: 'guess'})})).status""",
        plant.findings["modbus"],
    )
    assert status == 403
    assert _status(engine, plant.findings["modbus"]) is FindingStatus.OPEN


def test_triage_without_the_pages_csrf_token_is_refused(
    server: str, page: Page, sign_in: SignIn, plant: Plant, engine: Engine
) -> None:
    sign_in()
    page.goto(f"{server}/console/findings")
    page.evaluate("document.querySelector('#triage input[name=csrf]').value = 'forged'")
    _pick(page, plant.findings["modbus"])
    page.fill("#reason", "x")
    with page.expect_response(f"{server}/console/findings/triage") as posted:
        follow(page, "#apply-triage")
    assert posted.value.status == 403
    expect(page.locator("#error")).to_contain_text("form expired")
    assert _status(engine, plant.findings["modbus"]) is FindingStatus.OPEN


def test_triage_of_another_organisations_finding_moves_nothing(
    server: str, page: Page, sign_in: SignIn, plant: Plant, engine: Engine
) -> None:
    sign_in()
    page.goto(f"{server}/console/findings")
    # The page's own form, with the other organisation's id slipped in beside a visible one.
    page.evaluate(
        """(id) => { const box = document.createElement('input');
             box.type = 'checkbox'; box.name = 'finding_id'; box.value = id; box.checked = true;
             document.getElementById('triage').appendChild(box); }""",
        plant.findings["hidden"],
    )
    _pick(page, plant.findings["modbus"])
    page.fill("#reason", "x")
    with page.expect_response(f"{server}/console/findings/triage") as posted:
        follow(page, "#apply-triage")
    assert posted.value.status == 404
    expect(page.locator("#error")).to_contain_text("nothing changed: no finding with id")
    assert _status(engine, plant.findings["hidden"]) is FindingStatus.OPEN
    assert _status(engine, plant.findings["modbus"]) is FindingStatus.OPEN
