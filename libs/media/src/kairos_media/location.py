"""Where an S3 store's objects live, without the S3 client: settings and the api read it, and only
a process that opens the store imports boto3 (`kairos_media.s3`), which costs a process about
30 MiB of memory."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class S3Location:
    """Where the objects live and how to reach them."""

    #: The bucket's name.
    bucket: str
    #: Prepended to every key ('media' makes key 'a/b' the object 'media/a/b'); '' for none.
    prefix: str = ""
    #: The store's URL (https://minio.internal:9000); None for AWS S3 itself.
    endpoint_url: str | None = None
    #: The region the bucket is in (any value for most S3-compatible stores).
    region: str = "us-east-1"
    #: Static credentials; None to let boto3 find them when the store is built (instance profile,
    #: web identity ...).
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
