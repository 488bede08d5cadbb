"""The communication map on the console's device page, in headless Chromium: drawn (an arrow per
peer and direction, from client to server, red where it wrote) and listed, with peers that are
devices linked to their pages, recorded through the map's one writer."""

from datetime import timedelta

from playwright.sync_api import Page, expect
from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.inventory.communications import CommunicationSeen, record_communications
from tests.api.console.conftest import Shoot, SignIn, follow
from tests.api.console.plant import T0, Plant

PLC, WAGO, S7, STRANGER = "127.40.14.11", "127.40.14.13", "127.40.14.20", "127.40.14.99"


def _seen(plant: Plant, client: str, server: str, port: int, protocol: str, function: str,
          packets: int) -> CommunicationSeen:  # fmt: skip
    return CommunicationSeen(
        organization_id=plant.org,
        site_id=plant.north,
        client_address=client,
        server_address=server,
        port=port,
        transport="tcp",
        protocol=protocol,
        function=function,
        packets=packets,
        first_seen_at=T0,
        last_seen_at=T0 + timedelta(minutes=5),
    )


def _record_traffic(engine: Engine, plant: Plant) -> None:
    with Session(engine) as session:
        record_communications(
            session,
            [
                _seen(plant, WAGO, PLC, 502, "modbus", "write", 7),  # a device writes to it
                _seen(plant, WAGO, PLC, 502, "modbus", "read", 40),
                _seen(plant, STRANGER, PLC, 502, "modbus", "read", 3),  # not in the inventory
                _seen(plant, PLC, S7, 102, "s7comm", "read", 12),  # it is the client here
                _seen(plant, WAGO, S7, 102, "s7comm", "read", 1),  # not the PLC's: not shown
            ],
        )
        session.commit()


def test_device_page_draws_and_lists_who_talks_to_it(
    server: str, page: Page, sign_in: SignIn, plant: Plant, engine: Engine, shoot: Shoot
) -> None:
    _record_traffic(engine, plant)
    sign_in()
    page.goto(f"{server}/console/assets/{plant.plc}")
    rows = page.locator("#communications tbody tr")
    expect(rows).to_have_count(4)
    write = page.locator("#communications tr[data-function=write]")
    expect(write).to_have_attribute("data-direction", "in")
    expect(write).to_contain_text(WAGO)
    expect(write.locator(".badge")).to_have_text("write")
    outbound = page.locator("#communications tr[data-direction=out]")
    expect(outbound).to_have_count(1)
    expect(outbound).to_contain_text("s7comm 102/tcp")
    expect(page.locator("#communications")).to_contain_text(STRANGER)
    drawing = page.locator("#comm-map-drawing")
    expect(drawing).to_be_visible()
    # One arrow per peer and direction: the WAGO's reads and writes are one arrow, red.
    expect(drawing.locator("g.link")).to_have_count(3)
    wago = drawing.locator(f"g.link[data-peer='{WAGO}']")
    expect(wago).to_have_attribute("class", "link changing")
    expect(wago).to_have_attribute("data-direction", "in")
    expect(wago.locator("text")).to_have_text("modbus 502: read, write")
    expect(drawing.locator(f"g.link[data-peer='{STRANGER}']")).to_have_attribute(
        "class", "link other"
    )
    expect(drawing.locator(f"g.link[data-peer='{S7}']")).to_have_attribute("data-direction", "out")
    shoot("device-comm-map")
    # A peer that is a device leads to its page.
    follow(page, f"#communications tr[data-direction=out] a[href='/console/assets/{plant.s7}']")
    assert page.url == f"{server}/console/assets/{plant.s7}"
    # That device's own map: the PLC and the WAGO as its clients.
    expect(page.locator("#comm-map-drawing g.link")).to_have_count(2)


def test_device_page_without_traffic_says_how_the_map_is_learned(
    server: str, page: Page, sign_in: SignIn, plant: Plant
) -> None:
    sign_in()
    page.goto(f"{server}/console/assets/{plant.plc}")
    expect(page.locator("#comm-map-drawing")).to_have_count(0)
    expect(page.locator("#communications .empty")).to_contain_text("no traffic seen")
