"""A real S3-compatible server on loopback for tests: ``moto_server`` started in a subprocess,
with IAM authentication enforced (so wrong credentials are refused as on AWS), stopped at the
end. Every wait is bounded."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BUCKET = "cach-archive"
REGION = "us-east-1"
#: requests moto serves before it enforces IAM: create user, attach policy, create key
SETUP_REQUESTS = 3


@dataclass
class S3Server:
    url: str
    key: str
    secret: str
    log: Path
    proc: subprocess.Popen

    def env(self, **override: str) -> dict[str, str]:
        """The standard AWS variables that point at this server."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": self.key,
                "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_REGION": REGION, **override}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret)

    def requests(self) -> list[str]:
        """Request lines the server logged so far (``GET /bucket/key ...``)."""
        return [line for line in self.log.read_text(errors="replace").splitlines()
                if '"GET ' in line or '"HEAD ' in line or '"PUT ' in line]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"moto_server did not listen within {timeout} s: {log.read_text()[-2000:]}")


def _moto_server() -> str:
    exe = Path(sys.executable).parent / "moto_server"
    found = str(exe) if exe.exists() else shutil.which("moto_server")
    if not found:
        raise RuntimeError("moto_server not installed: pip install -r requirements/s3.txt")
    return found


def start(folder: Path) -> S3Server:
    """Start the server, create an IAM user allowed everything and a bucket; return them."""
    import boto3

    port, log = _free_port(), folder / "moto.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)}
    with log.open("wb") as out:
        proc = subprocess.Popen([_moto_server(), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_listening(port, proc, log)
        url = f"http://127.0.0.1:{port}"
        iam = boto3.client("iam", endpoint_url=url, region_name=REGION,
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="cach")
        iam.put_user_policy(UserName="cach", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="cach")["AccessKey"]
        server = S3Server(url, key["AccessKeyId"], key["SecretAccessKey"], log, proc)
        server.client().create_bucket(Bucket=BUCKET)
        return server
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise
