"""docs/deploy.md lists every series /metrics may show, with its type and labels."""

from __future__ import annotations

import re
from pathlib import Path

from tether.engines.base import EngineStats, UpstreamStats
from tether.server.metrics import Metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def _every_family() -> dict[str, tuple[str, set[str]]]:
    """Each family's name as exposed, type and labels, with every collector showing what
    it shows only sometimes (a gateway's upstreams, a plugin's failure, a webhook)."""
    stats = EngineStats(upstreams=(UpstreamStats("http://u/v1", True, 0, {}),))
    metrics = Metrics(lambda: stats, lambda: {("p", "hook", "error"): 1})
    metrics.webhook.backlog = lambda: (0, 0.0)
    metrics.requests.labels("/r", "200").inc()
    metrics.latency.labels("/r", "200").observe(0.1)
    metrics.ttft.labels("/r").observe(0.1)
    metrics.stream_errors.labels("/r").inc()
    metrics.count_principal_tokens("someone", 1)
    metrics.usage_bytes.labels("someone", "in").inc()
    metrics.usage_requests.labels("someone", "m", "/r").inc()
    metrics.usage_tokens.labels("someone", "m", "prompt").inc()
    families = {}
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {label for sample in family.samples for label in sample.labels} - {"le"}
        families[name] = (family.type, labels)
    return families


def test_every_series_is_in_the_table() -> None:
    section = DOC.read_text().split("\n## Metrics\n", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `tether_")]
    families = _every_family()
    assert len(families) >= 20
    for name, (kind, labels) in families.items():
        (row,) = [row for row in rows if f"`{name}`" in row]
        cells = row.split(" | ")
        assert kind in cells[1], (name, kind)
        named = set(re.findall(r"`(\w+)`", cells[2]))
        assert labels <= named, (name, labels - named)
