"""A real S3 API on loopback for tests: moto in server mode (a subprocess), on a random free port.

Unlike ``moto.mock_aws`` (in-process patching of botocore), this serves HTTP on 127.0.0.1, so every
client (boto3 in the test process, Dagster subprocesses, anything honouring an endpoint URL) goes
through the real S3 wire protocol. Use it from a conftest as a session fixture::

    from wealth_pipeline_tests.s3_server import s3_endpoint_url  # noqa: F401  (session fixture)

or directly::

    with moto_s3_server() as endpoint:
        bucket = create_bucket(endpoint)

While the server runs, the environment holds dummy AWS credentials (``testing``) and no profile, so
no real account is ever reachable; the previous values are restored when the server stops.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import pytest

DUMMY_ENV: dict[str, str | None] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": None,
    "AWS_SECURITY_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_DEFAULT_PROFILE": None,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
REGION = "us-east-1"


@contextmanager
def _patched_env(values: dict[str, str | None]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# Runs in the server subprocess: bind port 0 (the OS picks a free port, no check-then-bind race),
# report the port on stdout, serve without request logging, and exit when the parent closes stdin
# (so a crashed test session never leaves a server behind).
_SERVER_CODE = """
import os, sys, threading
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app,
)

class QuietHandler(MotoRequestHandler):
    def log_request(self, *args, **kwargs):
        pass

server = make_server(
    "127.0.0.1", 0, DomainDispatcherApplication(create_backend_app),
    threaded=True, request_handler=QuietHandler,
)

def watch_parent():
    sys.stdin.read()
    os._exit(0)

threading.Thread(target=watch_parent, daemon=True).start()
print(server.server_address[1], flush=True)
server.serve_forever()
"""

STARTUP_TIMEOUT_S = 60.0


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """Run a moto S3 server subprocess on 127.0.0.1 (a free port); yield its endpoint URL.

    A subprocess rather than a thread: the server does not compete with the tests for the GIL, and
    no in-process moto state is shared with the code under test.
    """
    with _patched_env(DUMMY_ENV), tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=os.environ.copy(),
        )
        try:
            port = _read_port(process, stderr)
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(process)


def _read_port(process: subprocess.Popen[str], stderr: IO[str]) -> int:
    assert process.stdout is not None
    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(STARTUP_TIMEOUT_S)
    line = ready[0].strip() if ready else ""
    if not line.isdigit():
        _stop(process)
        stderr.seek(0)
        raise RuntimeError(f"moto S3 server did not start (no port reported): {stderr.read()[-2000:]}")
    return int(line)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(OSError):
        if process.stdin is not None:
            process.stdin.close()
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@functools.lru_cache(maxsize=8)
def s3_test_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for the test server (cached per endpoint), with the dummy credentials explicit.

    Shared: do not register event hooks on it.
    """
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_bucket(endpoint_url: str, name: str | None = None) -> str:
    """Create a bucket (a fresh unique name unless ``name`` is given) on the server; return its name."""
    bucket = name or f"test-{uuid.uuid4().hex[:16]}"
    s3_test_client(endpoint_url).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(scope="session")
def s3_endpoint_url() -> Iterator[str]:
    """Endpoint URL of a moto S3 server on loopback, shared by the test session."""
    with moto_s3_server() as endpoint:
        yield endpoint
