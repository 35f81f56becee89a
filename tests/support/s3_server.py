"""An S3-speaking server for tests: moto's S3 in server mode, on a free port of 127.0.0.1.

It runs in a thread of the test process (moto's ThreadedMotoServer) and answers S3's HTTP API as
AWS does: buckets, multipart uploads, ranges, presigned URLs. Each test makes a bucket of its own
instead of cleaning up.
"""

from __future__ import annotations

import logging
import uuid

import httpx
from moto.server import ThreadedMotoServer

from kairos_media import S3Location
from support.ports import free_port, wait_for_port

#: moto accepts any credentials; real ones would be wasted here.
ACCESS_KEY_ID = "kairos-test"
SECRET_ACCESS_KEY = "kairos-test-secret"


class S3Server:
    """moto's server on a free port, until `stop()`."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self._server.start()
        if not wait_for_port(self.port, timeout=10):
            raise RuntimeError(f"moto's S3 server did not listen on {self.port}")

    def stop(self) -> None:
        self._server.stop()

    def create_bucket(self) -> str:
        """A new, empty bucket's name."""
        bucket = f"kairos-{uuid.uuid4().hex[:16]}"
        httpx.put(f"{self.endpoint_url}/{bucket}").raise_for_status()
        return bucket

    def location(self, bucket: str, prefix: str = "") -> S3Location:
        """How a store reaches `bucket` on this server."""
        return S3Location(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=self.endpoint_url,
            region="us-east-1",
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
        )
