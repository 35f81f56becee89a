"""Fixtures of the media integration tests: an S3-speaking server and a store on a fresh bucket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kairos_media import S3MediaStore
from support.s3_server import S3Server


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server for the module, on a free port."""
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """An empty bucket of the test's own."""
    return s3_server.create_bucket()


@pytest.fixture
def store(s3_server: S3Server, bucket: str) -> S3MediaStore:
    """A store on the test's bucket, under the prefix 'media'."""
    return S3MediaStore(s3_server.location(bucket, prefix="media"))
