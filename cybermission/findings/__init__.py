"""Findings: what rules and advisories judged about an asset, scored, through an audited lifecycle
(open, acknowledged, risk-accepted, false-positive, resolved); CISA advisories matched to assets."""
