"""Reading Prometheus's text exposition in tests, with prometheus-client's own parser."""

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, frozenset of label pairs) -> value."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: dict, name: str, **labels) -> float:
    """A sample's value; 0 for a counter series not yet made."""
    return found.get((name, frozenset(labels.items())), 0.0)


def series(found: dict, name: str) -> dict[frozenset, float]:
    return {labels: v for (sample, labels), v in found.items() if sample == name}
