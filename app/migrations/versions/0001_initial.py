"""The CI store: classes, CIs, identifiers, relationship types, relationships, change records, tokens.

Seeds the built-in CI classes (with attribute schemas and identification rules) and relationship types.
Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

_STRING = {"type": "string", "maxLength": 512}
_STRINGS = {"oneOf": [_STRING, {"type": "array", "items": _STRING, "maxItems": 256}]}
_HOST_IDENTIFIERS = {
    "serial_number": _STRING,
    "product_uuid": _STRING,
    "machine_id": _STRING,
    "fqdn": _STRING,
    "mac_address": _STRINGS,
    "ip_address": _STRINGS,
}
_HOST_RULES = [["serial_number"], ["product_uuid"], ["machine_id"], ["fqdn"], ["mac_address"]]


def _schema(properties: dict, required: list[str] | None = None) -> dict:
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


# (name, parent, label, description, attribute schema, identification rules)
SEED_CLASSES = [
    ("server", None, "Server", "A physical or virtual host running an operating system.",
     _schema({**_HOST_IDENTIFIERS,
              "os_name": _STRING, "os_version": _STRING, "kernel": _STRING,
              "cpu_count": {"type": "integer", "minimum": 1},
              "memory_mb": {"type": "integer", "minimum": 0}}),
     _HOST_RULES),
    ("virtual_machine", "server", "Virtual machine", "A server running on a hypervisor.",
     _schema({"hypervisor": _STRING}), []),
    ("container", None, "Container", "A container instance.",
     _schema({"container_id": _STRING, "image": _STRING}), [["container_id"]]),
    ("network_device", None, "Network device", "A switch, router, firewall or other network appliance.",
     _schema({**_HOST_IDENTIFIERS, "vendor": _STRING, "model": _STRING}), _HOST_RULES),
    ("load_balancer", None, "Load balancer", "A hardware or software load balancer.",
     _schema({"serial_number": _STRING, "fqdn": _STRING, "instance_key": _STRING, "vip": _STRINGS,
              "port": {"type": "integer", "minimum": 1, "maximum": 65535}}),
     [["serial_number"], ["fqdn"], ["instance_key"]]),
    ("ip_address", None, "IP address", "An IPv4 or IPv6 address.",
     _schema({"address": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}},
             ["address"]),
     [["address"]]),
    ("subnet", None, "Subnet", "An IP network.",
     _schema({"cidr": _STRING, "vlan": {"type": "integer", "minimum": 0, "maximum": 4095}}, ["cidr"]),
     [["cidr"]]),
    ("application", None, "Application", "Software running on a host.",
     _schema({"instance_key": _STRING, "version": _STRING, "process": _STRING,
              "port": {"type": "integer", "minimum": 1, "maximum": 65535}}),
     [["instance_key"]]),
    ("database", "application", "Database", "A database server instance.",
     _schema({"engine": _STRING}), []),
    ("web_server", "application", "Web server", "An HTTP server.", _schema({}), []),
    ("service", None, "Service", "A business or technical service that people use.",
     _schema({"service_id": _STRING, "sla": _STRING}), [["service_id"], ["name", "environment"]]),
    ("cluster", None, "Cluster", "A redundancy group: down only when fewer than min_members members are up.",
     _schema({"cluster_id": _STRING, "min_members": {"type": "integer", "minimum": 1}}), [["cluster_id"]]),
]

# (name, forward label, reverse label, impact direction, membership, description)
SEED_RELATIONSHIP_TYPES = [
    ("depends_on", "depends on", "used by", "target_to_source", False,
     "A depends_on B: B's failure impacts A."),
    ("runs_on", "runs on", "hosts", "target_to_source", False,
     "A runs_on B: B's failure takes A down."),
    ("member_of", "member of", "has member", "source_to_target", True,
     "A member_of group G: G is down only when fewer than its min_members members are up."),
    ("connects_to", "connects to", "connected from", "target_to_source", False,
     "A connects_to B (a host to its switch): B's failure cuts A off."),
    ("contains", "contains", "contained in", "source_to_target", False,
     "A contains B (a rack and its servers): A's failure impacts B."),
]


def upgrade() -> None:
    op.create_table(
        "ci_class",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("parent", sa.String(64), sa.ForeignKey("ci_class.name"), nullable=True),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("attribute_schema", JSON, nullable=False),
        sa.Column("identification_rules", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "ci",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("ci_class", sa.String(64), sa.ForeignKey("ci_class.name"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("environment", sa.String(64), nullable=True),
        sa.Column("criticality", sa.Integer, nullable=True),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("first_seen", TS, nullable=True),
        sa.Column("last_seen", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.CheckConstraint("criticality BETWEEN 1 AND 4", name="ck_ci_criticality"),
        sa.CheckConstraint("status IN ('planned','active','maintenance','stale','retired')", name="ck_ci_status"),
    )
    op.create_index("ix_ci_name", "ci", ["name"])
    op.create_index("ix_ci_status", "ci", ["status"])
    op.create_index("ix_ci_environment", "ci", ["environment"])
    op.create_index("ix_ci_owner", "ci", ["owner"])
    op.create_index("ix_ci_class_id", "ci", ["ci_class", "id"])

    op.create_table(
        "ci_identifier",
        sa.Column("family", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(512), primary_key=True),
        sa.Column("ci_id", sa.Uuid, sa.ForeignKey("ci.id"), nullable=False),
    )
    op.create_index("ix_ci_identifier_ci_id", "ci_identifier", ["ci_id"])

    op.create_table(
        "relationship_type",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("forward_label", sa.String(100), nullable=False),
        sa.Column("reverse_label", sa.String(100), nullable=False),
        sa.Column("impact_direction", sa.String(20), nullable=False),
        sa.Column("membership", sa.Boolean, nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "impact_direction IN ('target_to_source','source_to_target','none')",
            name="ck_relationship_type_impact",
        ),
    )
    op.create_table(
        "relationship",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("source_id", sa.Uuid, sa.ForeignKey("ci.id"), nullable=False),
        sa.Column("target_id", sa.Uuid, sa.ForeignKey("ci.id"), nullable=False),
        sa.Column("type", sa.String(64), sa.ForeignKey("relationship_type.name"), nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("first_seen", TS, nullable=True),
        sa.Column("last_seen", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("source_id", "target_id", "type", name="uq_relationship_ends_type"),
    )
    op.create_index("ix_relationship_target_id", "relationship", ["target_id"])
    op.create_index("ix_relationship_type", "relationship", ["type"])

    op.create_table(
        "change_record",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("object_id", sa.Uuid, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("diff", JSON, nullable=False),
    )
    op.create_index("ix_change_record_object", "change_record", ["object_id", "seq"])

    op.create_table(
        "api_token",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
    )

    now = datetime.now(UTC)
    ci_class = sa.table(
        "ci_class",
        sa.column("name"), sa.column("parent"), sa.column("label"), sa.column("description"),
        sa.column("attribute_schema", JSON), sa.column("identification_rules", JSON),
        sa.column("created_at", TS), sa.column("updated_at", TS),
    )
    op.bulk_insert(ci_class, [
        {"name": name, "parent": parent, "label": label, "description": description,
         "attribute_schema": schema, "identification_rules": rules, "created_at": now, "updated_at": now}
        for name, parent, label, description, schema, rules in SEED_CLASSES
    ])
    relationship_type = sa.table(
        "relationship_type",
        sa.column("name"), sa.column("forward_label"), sa.column("reverse_label"),
        sa.column("impact_direction"), sa.column("membership", sa.Boolean), sa.column("description"),
        sa.column("created_at", TS),
    )
    op.bulk_insert(relationship_type, [
        {"name": name, "forward_label": forward, "reverse_label": reverse, "impact_direction": impact,
         "membership": membership, "description": description, "created_at": now}
        for name, forward, reverse, impact, membership, description in SEED_RELATIONSHIP_TYPES
    ])


def downgrade() -> None:
    for table in ("api_token", "change_record", "relationship", "relationship_type",
                  "ci_identifier", "ci", "ci_class"):
        op.drop_table(table)
