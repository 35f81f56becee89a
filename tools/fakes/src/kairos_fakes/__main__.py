"""`python -m kairos_fakes`: serve every platform fake (and the media host) on its default port.

Prints each fake's URL and the `KAIROS_PLATFORM_URLS` value that points the publisher at them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from kairos_fakes import fake_classes, platform_urls


async def serve(host: str, offset: int) -> None:
    fakes = [cls() for cls in fake_classes()]
    for fake in fakes:
        await fake.start(host, type(fake).default_port + offset if type(fake).default_port else 0)
        print(f"{fake.name:<10} {fake.url}", flush=True)
    print(f"KAIROS_PLATFORM_URLS={platform_urls(fakes)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for fake in fakes:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port-offset", type=int, default=0, help="added to every default port")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port_offset))


if __name__ == "__main__":
    main()
