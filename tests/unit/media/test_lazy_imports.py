"""A process imports only the media code it uses: the publisher reads stored files and neither
probes them (PyAV) nor, with the filesystem store, talks S3 (boto3); the api loads PyAV with its
first probe. Together they cost a process about 30 MiB of memory."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import json, sys
import kairos_publisher.service
from kairos_media import FileStore, S3Location, media_settings
print(json.dumps({name: name in sys.modules for name in ("av", "boto3", "botocore")}))
"""


def test_the_publisher_imports_neither_pyav_nor_boto3() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=60
    )

    assert json.loads(ran.stdout) == {"av": False, "boto3": False, "botocore": False}


API_CHECK = """
import json, sys
import kairos_api.service
print(json.dumps({name: name in sys.modules for name in ("av", "boto3")}))
"""


def test_the_api_loads_pyav_with_its_first_probe_only() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", API_CHECK], capture_output=True, text=True, check=True, timeout=60
    )

    assert json.loads(ran.stdout) == {"av": False, "boto3": False}


def test_the_package_still_names_everything_it_exports() -> None:
    import kairos_media

    for name in kairos_media.__all__:
        assert getattr(kairos_media, name) is not None, name
