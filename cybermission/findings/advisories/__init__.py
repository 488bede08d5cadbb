"""CISA ICS advisories (CSAF 2.0): import into the store, and match against discovered devices."""
