"""The core of cybermission: settings, store, scope guard, probe interface and the domain packages.

The domains (scans, inventory, findings, rules, alerts, sites, sensors, auth) never import
``api`` or ``scanners``: probes, importers and engines are found through entry points.
"""

__version__ = "0.1.0"
