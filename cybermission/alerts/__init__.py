"""Alerting: channels (signed webhook, syslog CEF, MQTT), policies choosing which events to send,
and the outbox worker that delivers them."""
