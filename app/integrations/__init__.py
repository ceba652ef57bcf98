"""Bridges into the tools operators already run: each module translates one outside format to and from
Karta's services (Alertmanager's webhook, Ansible's inventory, Prometheus's http_sd and metrics,
webhook deliveries, CSV). A bridge describes its outside format at its top, never calls Karta's own
HTTP API, and never reaches into another bridge's tables."""
