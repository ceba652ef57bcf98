"""Prometheus's HTTP service discovery (http_sd) format: Karta's hosts as scrape targets.

Format (https://prometheus.io/docs/prometheus/latest/http_sd/, and `http_sd_config` in
https://prometheus.io/docs/prometheus/latest/configuration/configuration/#http_sd_config): a JSON
list of target groups, each `{"targets": ["<host>:<port>", ...], "labels": {"<name>": "<value>"}}`,
answered 200 with Content-Type application/json; Prometheus replaces its whole list with each answer
(no paging). Sample, one group per host:

    [{"targets": ["10.0.0.5:9100"],
      "labels": {"cmdb_ci": "6f1c...", "cmdb_name": "web-1", "ci_class": "server",
                 "environment": "prod", "owner": "team-web", "services": "checkout,shop"}}]

Label names are fixed here (valid Prometheus names); their values are whatever the CMDB holds, which
discovery may have filled with anything: they travel as JSON strings, which Prometheus takes as they
are, so nothing needs escaping, but nothing read from a CI ever becomes a label NAME. `services` is the
names of the services the host serves, sorted and joined with commas (a comma inside a name is written
%2C, and a % as %25, so that the list splits back unambiguously); past MAX_SERVICES_IN_LABEL names it
ends with the item `...` (a service named `...` is written %2E%2E%2E): every series of the target
carries the label, and a shared database host can serve thousands of services. An absent environment
or owner is an empty string, which Prometheus treats as no label. Translation only: no database, no
HTTP here.
"""

from typing import Any

from app.services.scrape_targets import Target

LABELS = ("cmdb_ci", "cmdb_name", "ci_class", "environment", "owner", "services")
DEFAULT_PORT = 9100  # node_exporter's
MAX_SERVICES_IN_LABEL = 100
MORE = "..."


def host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _list_item(name: str) -> str:
    return "%2E%2E%2E" if name == MORE else name.replace("%", "%25").replace(",", "%2C")


def services_label(names: tuple[str, ...]) -> str:
    items = [_list_item(name) for name in names[:MAX_SERVICES_IN_LABEL]]
    return ",".join(items + [MORE] if len(names) > MAX_SERVICES_IN_LABEL else items)


def target_group(target: Target, port: int) -> dict[str, Any]:
    return {
        "targets": [host_port(target.address, port)],
        "labels": {
            "cmdb_ci": target.ci_id,
            "cmdb_name": target.name,
            "ci_class": target.ci_class,
            "environment": target.environment or "",
            "owner": target.owner or "",
            "services": services_label(target.services),
        },
    }


def http_sd(targets: list[Target], port: int) -> list[dict[str, Any]]:
    return [target_group(target, port) for target in targets]
