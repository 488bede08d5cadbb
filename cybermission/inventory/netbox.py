"""The inventory as NetBox bulk-import CSV: manufacturers, device types, devices, IP addresses.

One CSV per NetBox object type, imported in this order (Import in each list view, or
``POST /api/dcim/.../`` with the same fields), each column a field of NetBox's import form:

- ``manufacturers.csv`` (dcim.manufacturer): ``name`` (the device's vendor), ``slug``;
- ``device-types.csv`` (dcim.devicetype): ``manufacturer`` (vendor), ``model``, ``slug``,
  ``part_number`` (the product, when it differs from the model), ``u_height`` 0 (DIN rail);
- ``devices.csv`` (dcim.device): ``name`` (the device's name, else vendor, model and first
  address; a clash gets the id's first characters), ``role`` (``--role``, default
  ``ot-device``), ``manufacturer``, ``device_type`` (the model), ``site`` (the device's site
  name, else ``--site``), ``status`` active, ``serial``, ``description`` (product and
  firmware), ``comments`` (the cybermission id and the addresses);
- ``ip-addresses.csv`` (ipam.ipaddress): ``address`` (/32 or /128), ``status`` active,
  ``dns_name`` empty, ``description`` (the device's NetBox name).

Only top-level devices with a vendor and a model are exported as devices (NetBox requires a device
type); gateway units and unidentified hosts are left out, their addresses still listed. The role
and the sites must exist in NetBox before the devices are imported. IP addresses are not assigned
to the devices: NetBox assigns an address to an interface, which the inventory does not model.
"""

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from sqlmodel import Session

from cybermission.csv_cells import CellValue
from cybermission.inventory.models import Device
from cybermission.inventory.queries import list_addresses_by_device, list_devices

NETBOX_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "manufacturers.csv": ("name", "slug"),
    "device-types.csv": ("manufacturer", "model", "slug", "part_number", "u_height"),
    "devices.csv": (
        "name",
        "role",
        "manufacturer",
        "device_type",
        "site",
        "status",
        "serial",
        "description",
        "comments",
    ),
    "ip-addresses.csv": ("address", "status", "dns_name", "description"),
}
PAGE = 500
MAX_NAME = 64  # NetBox's device name limit


def slugify(text: str) -> str:
    """NetBox's slug alphabet: lower-case letters, digits, hyphens and underscores, at most 100."""
    return re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-")[:100] or "unnamed"


@dataclass
class NetboxExport:
    """The rows of each file of :data:`NETBOX_COLUMNS`."""

    rows: dict[str, list[dict[str, CellValue]]] = field(
        default_factory=lambda: {name: [] for name in NETBOX_COLUMNS}
    )


def _devices(session: Session, visible_to: str | None) -> Iterator[tuple[Device, list[str]]]:
    cursor: str | None = None
    while True:
        devices, cursor = list_devices(
            session=session, visible_to=visible_to, top_level=True, cursor=cursor, limit=PAGE
        )
        addresses = list_addresses_by_device(session=session, device_ids=[d.id for d in devices])
        for device in devices:
            yield device, addresses[device.id]
        if cursor is None:
            return


def _prefixed(address: str) -> str:
    return f"{address}/128" if ":" in address else f"{address}/32"


def netbox_export(
    session: Session,
    *,
    site_names: Mapping[str, str],
    default_site: str,
    role: str,
    visible_to: str | None = None,
) -> NetboxExport:
    """The inventory ``visible_to`` sees as NetBox rows; ``site_names`` maps site ids to names."""
    export = NetboxExport()
    manufacturers: set[str] = set()
    types: set[tuple[str, str]] = set()
    names: set[str] = set()
    for device, addresses in _devices(session, visible_to):
        vendor, model = (device.vendor or "").strip(), (device.model or "").strip()
        label = device.name.strip() or " ".join(
            part for part in (vendor, model, addresses[0] if addresses else "") if part
        )
        label = (label or device.id)[:MAX_NAME]
        if label in names:  # NetBox names are unique within a site
            label = f"{label[: MAX_NAME - 9]} {device.id[:8]}"
        names.add(label)
        for address in addresses:
            export.rows["ip-addresses.csv"].append(
                {
                    "address": _prefixed(address),
                    "status": "active",
                    "dns_name": "",
                    "description": label,
                }
            )
        if not (vendor and model):
            continue
        if vendor not in manufacturers:
            manufacturers.add(vendor)
            export.rows["manufacturers.csv"].append({"name": vendor, "slug": slugify(vendor)})
        if (vendor, model) not in types:
            types.add((vendor, model))
            code = (device.product or "").strip()
            export.rows["device-types.csv"].append(
                {
                    "manufacturer": vendor,
                    "model": model,
                    "slug": slugify(f"{vendor}-{model}"),
                    "part_number": code[:50] if code != model else "",
                    "u_height": 0,
                }
            )
        description = " ".join(
            part
            for part in (device.product, f"firmware {device.firmware}" if device.firmware else "")
            if part
        )
        export.rows["devices.csv"].append(
            {
                "name": label,
                "role": role,
                "manufacturer": vendor,
                "device_type": model,
                "site": site_names.get(device.site_id or "", default_site),
                "status": "active",
                "serial": (device.serial or "")[:50],
                "description": description[:200],
                "comments": f"cybermission {device.id}; addresses {', '.join(addresses)}",
            }
        )
    return export
