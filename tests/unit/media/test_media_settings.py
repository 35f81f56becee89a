"""KAIROS_MEDIA_STORE and the S3 variables become a store, and a wrong value names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from kairos_common.settings import SettingsError
from kairos_media import FileStore, S3Location, S3MediaStore, media_settings, open_store


def test_without_variables_media_goes_to_the_users_data_folder() -> None:
    settings = media_settings({"XDG_DATA_HOME": "/home/ada/.data"})
    assert settings.store == Path("/home/ada/.data/kairos/media")
    assert media_settings({}).store == Path.home() / ".local/share/kairos/media"
    store = open_store(settings)
    assert isinstance(store, FileStore)
    assert store.root == Path("/home/ada/.data/kairos/media")


@pytest.mark.parametrize(
    ("value", "root"),
    [
        ("file:///var/lib/kairos/media", "/var/lib/kairos/media"),
        ("file://localhost/srv/media%20files", "/srv/media files"),
        ("/var/lib/kairos/media", "/var/lib/kairos/media"),
    ],
)
def test_a_folder(value: str, root: str) -> None:
    assert media_settings({"KAIROS_MEDIA_STORE": value}).store == Path(root)


def test_a_bucket_with_its_endpoint_region_and_credentials() -> None:
    settings = media_settings(
        {
            "KAIROS_MEDIA_STORE": "s3://kairos-media/uploads/v1/",
            "KAIROS_S3_ENDPOINT_URL": "http://minio:9000/",
            "KAIROS_S3_REGION": "eu-west-3",
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        }
    )

    assert settings.store == S3Location(
        bucket="kairos-media",
        prefix="uploads/v1",
        endpoint_url="http://minio:9000",
        region="eu-west-3",
        access_key_id="AKIAEXAMPLE",
        secret_access_key="s3cr3t",
    )
    assert "s3cr3t" not in repr(settings)
    assert isinstance(open_store(settings), S3MediaStore)


def test_credentials_from_files(tmp_path: Path) -> None:
    (tmp_path / "id").write_text("AKIAFROMFILE\n")
    (tmp_path / "secret").write_text("from-a-file\n")

    settings = media_settings(
        {
            "KAIROS_MEDIA_STORE": "s3://kairos-media",
            "AWS_ACCESS_KEY_ID_FILE": str(tmp_path / "id"),
            "AWS_SECRET_ACCESS_KEY_FILE": str(tmp_path / "secret"),
        }
    )

    assert isinstance(settings.store, S3Location)
    assert settings.store.access_key_id == "AKIAFROMFILE"
    assert settings.store.secret_access_key == "from-a-file"
    assert settings.store.endpoint_url is None
    assert settings.store.prefix == ""


def test_without_static_credentials_the_client_finds_its_own() -> None:
    settings = media_settings({"KAIROS_MEDIA_STORE": "s3://kairos-media"})
    assert isinstance(settings.store, S3Location)
    assert settings.store.access_key_id is None
    assert settings.store.secret_access_key is None


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"KAIROS_MEDIA_STORE": "media"}, "KAIROS_MEDIA_STORE='media' is not an absolute path"),
        ({"KAIROS_MEDIA_STORE": "ftp://host/media"}, "KAIROS_MEDIA_STORE='ftp://host/media'"),
        ({"KAIROS_MEDIA_STORE": "file://nas/media"}, "names host 'nas'"),
        ({"KAIROS_MEDIA_STORE": "file://"}, "names no folder"),
        ({"KAIROS_MEDIA_STORE": "s3://Bad_Bucket/x"}, "names no valid bucket"),
        ({"KAIROS_MEDIA_STORE": "s3://key:secret@bucket"}, "KAIROS_MEDIA_STORE holds credentials"),
        ({"KAIROS_MEDIA_STORE": "s3://bucket/../up"}, "KAIROS_MEDIA_STORE: the prefix key"),
        ({"KAIROS_MEDIA_STORE": "s3://bucket?x=1"}, "takes no '?' or '#'"),
        (
            {"KAIROS_MEDIA_STORE": "s3://bucket", "KAIROS_S3_ENDPOINT_URL": "minio:9000"},
            "KAIROS_S3_ENDPOINT_URL='minio:9000' is not an http(s) URL",
        ),
        (
            {"KAIROS_MEDIA_STORE": "s3://bucket", "KAIROS_S3_ENDPOINT_URL": "http://minio/b"},
            "KAIROS_S3_ENDPOINT_URL='http://minio/b' must be the store's address alone",
        ),
        (
            {"KAIROS_MEDIA_STORE": "s3://bucket", "KAIROS_S3_ENDPOINT_URL": "http://m:99999"},
            "KAIROS_S3_ENDPOINT_URL='http://m:99999' has no valid port",
        ),
        (
            {"KAIROS_MEDIA_STORE": "s3://bucket", "KAIROS_S3_REGION": "Paris, France"},
            "KAIROS_S3_REGION='Paris, France'",
        ),
        (
            {"KAIROS_MEDIA_STORE": "s3://bucket", "AWS_ACCESS_KEY_ID": "AKIA"},
            "AWS_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY_FILE) is unset",
        ),
        (
            {
                "KAIROS_MEDIA_STORE": "s3://bucket",
                "AWS_ACCESS_KEY_ID": "AKIA",
                "AWS_ACCESS_KEY_ID_FILE": "/run/secrets/id",
            },
            "AWS_ACCESS_KEY_ID and AWS_ACCESS_KEY_ID_FILE are both set",
        ),
        (
            {
                "KAIROS_MEDIA_STORE": "s3://bucket",
                "AWS_SECRET_ACCESS_KEY_FILE": "/nonexistent/secret",
            },
            "AWS_SECRET_ACCESS_KEY_FILE='/nonexistent/secret' cannot be read",
        ),
    ],
)
def test_a_wrong_value_names_its_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as raised:
        media_settings(environ)
    assert named in str(raised.value)
