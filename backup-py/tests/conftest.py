"""Fixtures of the binding's tests: source trees, and a real S3 server
(s3s-fs) started on 127.0.0.1 for the tests that need one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: A command that writes 120 MiB of random bytes over six seconds: a
#: backup of its output lasts that long whatever the machine.
SLOW_SOURCE = [sys.executable, "-c", textwrap.dedent(
    """
    import os, sys, time
    block = os.urandom(1 << 20)
    for _ in range(120):
        sys.stdout.buffer.write(block)
        sys.stdout.flush()
        time.sleep(0.05)
    """
)]

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"


def make_tree(root: Path) -> dict[str, bytes]:
    """A small tree of files (text, binary, empty, nested); returns the
    content of each file by its path relative to ``root``."""
    files = {
        "notes.txt": b"remember the milk\n",
        "empty": b"",
        "deep/er/still.bin": os.urandom(200_000),
        "deep/repeated.txt": b"the same line\n" * 10_000,
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "data"
    root.mkdir()
    return root, make_tree(root)


@dataclass
class S3Server:
    endpoint: str
    bucket: str

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """s3s-fs with an empty bucket; its credentials in the environment, as
    a user of the AWS SDKs sets them."""
    program = shutil.which("s3s-fs") or str(Path.home() / ".cargo/bin/s3s-fs")
    if not Path(program).exists():
        pytest.fail("s3s-fs is not installed (scripts/install-test-servers.sh installs it)")
    root = tmp_path_factory.mktemp("s3")
    (root / "bucket").mkdir()
    for attempt in range(5):
        port = free_port()
        process = subprocess.Popen(
            [program, "--host", "127.0.0.1", "--port", str(port),
             "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None and not answers(port):
            time.sleep(0.05)
        if process.poll() is None and answers(port):
            break
        process.kill()
        process.wait()
    else:
        pytest.fail("s3s-fs did not start")
    saved = {name: os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1")
    try:
        yield S3Server(endpoint=f"http://127.0.0.1:{port}", bucket="bucket")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        process.kill()
        process.wait()
