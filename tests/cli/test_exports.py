"""``cybermission export KIND``: the API's exports as files, and NetBox's bulk-import CSV, from a
store an nmap import filled (two EtherNet/IP devices, one unidentified host)."""

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cybermission.cli import app
from tests.cli.stores import store_url

REPORT = """<nmaprun start="1700000000">
<host><status state="up"/><address addr="127.63.0.1" addrtype="ipv4"/><ports>
 <port protocol="tcp" portid="44818"><state state="open"/><service name="EtherNetIP-2"/>
  <script id="enip-info" output="">
   <elem key="type">Programmable Logic Controller (14)</elem>
   <elem key="vendor">Rockwell Automation/Allen-Bradley (1)</elem>
   <elem key="productName">1769-L33ER/A LOGIX5333ER</elem>
   <elem key="serialNumber">0x60c2a5f1</elem><elem key="productCode">108</elem>
   <elem key="revision">33.11</elem></script></port>
 <port protocol="tcp" portid="502"><state state="open"/><service name="mbap"/></port>
</ports></host>
<host><status state="up"/><address addr="127.63.0.2" addrtype="ipv4"/><ports>
 <port protocol="tcp" portid="44818"><state state="open"/>
  <script id="enip-info" output="">
   <elem key="vendor">Rockwell Automation/Allen-Bradley (1)</elem>
   <elem key="productName">1769-L33ER/A LOGIX5333ER</elem>
   <elem key="serialNumber">0x60c2a5f2</elem><elem key="productCode">108</elem>
   <elem key="revision">33.11</elem></script></port>
</ports></host>
<host><status state="up"/><address addr="127.63.0.3" addrtype="ipv4"/><ports>
 <port protocol="tcp" portid="22"><state state="open"/><service name="ssh"/></port>
</ports></host></nmaprun>"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {"CYBERMISSION_DATABASE_URL": store_url(tmp_path / "cli.db")}
    report = tmp_path / "scan.xml"
    report.write_text(REPORT, encoding="utf-8")
    result = CliRunner().invoke(app, ["import", "nmap", str(report), "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    return env


def _export(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, ["export", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_export_assets_json_and_csv_list_the_same_devices(env: dict[str, str]) -> None:
    assets = json.loads(_export(env, "assets.json"))
    rows = list(csv.DictReader(io.StringIO(_export(env, "assets.csv"))))
    assert len(assets) == len(rows) == 3
    assert {a["id"] for a in assets} == {r["id"] for r in rows}


def test_export_findings_and_ocsf_carry_the_same_findings(env: dict[str, str]) -> None:
    findings = json.loads(_export(env, "findings.json"))
    ocsf = json.loads(_export(env, "findings.ocsf.json"))
    rows = list(csv.DictReader(io.StringIO(_export(env, "findings.csv"))))
    assert findings
    assert len(findings) == len(ocsf) == len(rows)
    assert {o["class_uid"] for o in ocsf} == {2002}


def test_export_cyclonedx_to_a_file(env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "inventory.cdx.json"
    _export(env, "inventory.cdx.json", "--output", str(target))
    bom = json.loads(target.read_text(encoding="utf-8"))
    assert bom["bomFormat"] == "CycloneDX"
    assert len(bom["components"]) == 3


def test_export_netbox_writes_the_four_bulk_import_files(
    env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "netbox"
    _export(env, "netbox", "--output", str(folder), "--site", "plant-a")

    def read(name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO((folder / name).read_text(encoding="utf-8"))))

    (maker,) = read("manufacturers.csv")
    assert maker == {
        "name": "Rockwell Automation/Allen-Bradley",
        "slug": "rockwell-automation-allen-bradley",
    }
    (kind,) = read("device-types.csv")
    assert (kind["manufacturer"], kind["model"]) == (maker["name"], "1769-L33ER/A LOGIX5333ER")
    devices = read("devices.csv")
    assert len(devices) == 2  # the unidentified host has no device type
    assert len({d["name"] for d in devices}) == 2
    assert {d["serial"] for d in devices} == {"0x60c2a5f1", "0x60c2a5f2"}
    assert {(d["site"], d["role"], d["status"]) for d in devices} == {
        ("plant-a", "ot-device", "active")
    }
    addresses = read("ip-addresses.csv")
    assert {a["address"] for a in addresses} == {"127.63.0.1/32", "127.63.0.2/32", "127.63.0.3/32"}


def test_export_unknown_kind_exits_2(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["export", "assets.xml"], env=env)
    assert result.exit_code == 2
    assert "netbox" in result.output
