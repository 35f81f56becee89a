"""What every fake shares: the request record, one-shot faults, `python -m kairos_fakes`."""

from __future__ import annotations

import asyncio
import sys

import httpx
import pytest

from kairos_fakes import fake_classes
from kairos_fakes.media import MediaHost
from support.ports import free_port_range, wait_for_port


async def test_a_fake_lists_what_it_received_but_not_the_listing(media_host: MediaHost) -> None:
    async with httpx.AsyncClient() as http:
        await http.get(media_host.image_url("a.png"))
        listed = (await http.get(f"{media_host.url}/_fake/requests")).json()
        again = (await http.get(f"{media_host.url}/_fake/requests")).json()
    assert [(r["method"], r["path"]) for r in listed] == [("GET", "/images/a.png")]
    assert again == listed


def test_a_fault_is_used_once_and_unknown_kinds_are_refused() -> None:
    host = MediaHost()
    host.fail_next("create", "rate_limit", seconds=2, times=2)
    first, second, third = host.fault("create"), host.fault("create"), host.fault("create")
    assert first is not None
    assert (first.kind, first.seconds) == ("rate_limit", 2)
    assert second is not None
    assert third is None
    with pytest.raises(ValueError, match="unknown fault 'explode'"):
        host.fail_next("create", "explode")


async def test_python_m_kairos_fakes_serves_every_fake_and_prints_their_urls() -> None:
    base = free_port_range(len(fake_classes()))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kairos_fakes",
        f"--port-offset={base - 9100}",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("KAIROS_PLATFORM_URLS="):
            line = await asyncio.wait_for(process.stdout.readline(), timeout=20)
            assert line, f"exited early: {lines}"
            lines.append(line.decode().strip())
        urls = dict(item.split("=", 1) for item in lines[-1].partition("=")[2].split(","))
        assert urls["x"] == f"http://127.0.0.1:{base + 1}"
        assert len(urls) == len(fake_classes()) - 1  # all but the media host
        assert wait_for_port(base, 5)
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{urls['mastodon']}/_fake/requests")
        assert answer.json() == []
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
