"""Reading a service process's Prometheus metrics over HTTP, as Prometheus would."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support.services import ServiceProcess

#: A sample's name and its labels, sorted.
Key = tuple[str, tuple[tuple[str, str], ...]]


async def scrape(process: ServiceProcess) -> dict[Key, float]:
    """Every sample the process exposes, parsed by the official client's parser."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(f"http://127.0.0.1:{process.metrics_port}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[Key, float], name: str, **labels: str) -> float:
    """The sample's value; 0 when the process has not exposed it yet (a label set not seen)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
