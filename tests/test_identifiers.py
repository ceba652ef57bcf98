"""Identifier normalization and junk values (pure functions)."""

import pytest

from app.services.identifiers import identifier_values, normalize


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("serial_number", "  abc 123 ", "abc 123"),
        ("serial_number", "Default string", None),
        ("serial_number", "To be filled by O.E.M.", None),
        ("serial_number", "System Serial Number", None),
        ("serial_number", "0000000000", None),
        ("serial_number", "", None),
        ("serial_number", 12345, "12345"),
        ("serial_number", True, None),
        ("serial_number", {"x": 1}, None),
        ("product_uuid", "4C4C4544-0031-3510-8052-B7C04F4E3232", "4c4c4544-0031-3510-8052-b7c04f4e3232"),
        ("product_uuid", "00000000-0000-0000-0000-000000000000", None),
        ("product_uuid", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", None),
        ("product_uuid", "03000200-0400-0500-0006-000700080009", None),
        ("machine_id", "0f8e7a1b2c3d4e5f60718293a4b5c6d7", "0f8e7a1b-2c3d-4e5f-6071-8293a4b5c6d7"),
        ("mac_address", "52-54-00-AB-CD-EF", "52:54:00:ab:cd:ef"),
        ("mac_address", "5254.00ab.cdef", "52:54:00:ab:cd:ef"),
        ("mac_address", "00:00:00:00:00:00", None),
        ("mac_address", "ff:ff:ff:ff:ff:ff", None),
        ("mac_address", "00:00:5e:00:01:0a", None),
        ("mac_address", "01:00:5e:00:00:01", None),
        ("mac_address", "zz", None),
        ("fqdn", "Web-1.Example.COM.", "web-1.example.com"),
        ("fqdn", "localhost", None),
        ("fqdn", "localhost.localdomain", None),
        ("ip_address", "10.0.0.5", "10.0.0.5"),
        ("ip_address", "10.0.0.5/24", "10.0.0.5"),
        ("ip_address", "127.0.0.1", None),
        ("ip_address", "::1", None),
        ("ip_address", "169.254.1.1", None),
        ("ip_address", "fe80::1%eth0", None),
        ("ip_address", "0.0.0.0", None),
        ("ip_address", "::ffff:10.1.2.3", "10.1.2.3"),
        ("ip_address", "2001:DB8::1", "2001:db8::1"),
        ("address", "not an ip", None),
    ],
)
def test_normalize(key, raw, expected):
    assert normalize(key, raw) == expected


def test_identifier_values_in_rule_order_with_lists_and_composites():
    rules = [["serial_number"], ["mac_address"], ["name", "environment"]]
    facts = {"serial_number": "Default string", "mac_address": ["52:54:00:00:00:01", "52-54-00-00-00-01", "junk"],
             "name": "Payments", "environment": "prod"}
    assert identifier_values(rules, facts) == [
        ("mac_address", "52:54:00:00:00:01"), ("name+environment", "payments\x1fprod")]
    assert identifier_values(rules, {"name": "Payments", "environment": None}) == []
