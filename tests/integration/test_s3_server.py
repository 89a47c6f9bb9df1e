"""The embedded S3 cache: SeaweedFS on loopback that enforces credentials and stops cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from guanaco_dagster.deployment.local_process import process_group_members
from guanaco_dagster.embedded.s3_server import SeaweedS3Server
from guanaco_dagster.stages.s3_client import ensure_bucket, make_s3_client
from tests.fixtures.s3 import S3Info


def _error_code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def test_objects_round_trip_with_the_right_credentials(s3_server: S3Info) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key="tests/round-trip.txt", Body=b"guanaco")

    body = client.get_object(Bucket=s3_server.bucket, Key="tests/round-trip.txt")["Body"].read()

    assert body == b"guanaco"


def test_wrong_secret_is_refused(s3_server: S3Info) -> None:
    client = make_s3_client(s3_server.endpoint_url, s3_server.access_key, "not-the-secret")

    with pytest.raises(ClientError) as refused:
        client.list_objects_v2(Bucket=s3_server.bucket)

    assert _error_code(refused.value) == "SignatureDoesNotMatch"


def test_unknown_access_key_is_refused(s3_server: S3Info) -> None:
    client = make_s3_client(s3_server.endpoint_url, "nobody", s3_server.secret_key)

    with pytest.raises(ClientError) as refused:
        client.get_object(Bucket=s3_server.bucket, Key="tests/round-trip.txt")

    assert _error_code(refused.value) == "InvalidAccessKeyId"


def test_ensure_bucket_creates_once_then_reports_existing(s3_server: S3Info) -> None:
    args = (s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key, "guanaco-ensure-once")

    assert ensure_bucket(*args) is True
    assert ensure_bucket(*args) is False
    assert "guanaco-ensure-once" in {b["Name"] for b in s3_server.client().list_buckets()["Buckets"]}


def _listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address hex, port) of every TCP socket process `pid` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                listening.add((address, int(port, 16)))
    return listening


def test_every_listener_is_on_loopback_and_an_assigned_port(s3_server: S3Info) -> None:
    server = s3_server.server
    assert server.pid is not None

    listening = _listening_sockets(server.pid)

    assert listening, "SeaweedFS listens on nothing"
    assert {address for address, _ in listening} == {"0100007F"}  # 127.0.0.1
    assert {port for _, port in listening} <= set(server.ports.values())


def test_stop_leaves_no_process_and_restart_keeps_objects(tmp_path: Path) -> None:
    with SeaweedS3Server(tmp_path / "data", "key", "secret") as server:
        pid = server.pid
        ensure_bucket(server.endpoint_url, "key", "secret", "kept-bucket")
        make_s3_client(server.endpoint_url, "key", "secret").put_object(
            Bucket="kept-bucket", Key="a.txt", Body=b"kept"
        )
    assert pid is not None and process_group_members(pid) == []
    assert server.pid is None

    with SeaweedS3Server(tmp_path / "data", "key", "secret") as restarted:
        restarted_pid = restarted.pid
        client = make_s3_client(restarted.endpoint_url, "key", "secret")
        assert client.get_object(Bucket="kept-bucket", Key="a.txt")["Body"].read() == b"kept"
    assert restarted_pid is not None and process_group_members(restarted_pid) == []
