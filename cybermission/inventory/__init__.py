"""The asset inventory: devices, their addresses, interfaces and services merged by identity across
scans, their criticality, and the history of what changed."""
