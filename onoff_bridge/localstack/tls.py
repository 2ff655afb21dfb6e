"""A throwaway CA and one server certificate for the secured local cluster, made with openssl.

Made once under the stack's folder and reused: the brokers (a PKCS#12 keystore)
and the registry proxy (PEM) present the same certificate, valid for
`localhost` and 127.0.0.1; clients trust `ca.pem`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from onoff_bridge.localstack.errors import ServiceStartError, ToolMissingError


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    certificate: Path
    key: Path
    keystore: Path

    def exist(self) -> bool:
        return all(p.exists() for p in (self.ca, self.certificate, self.key, self.keystore))


def tls_files(directory: Path) -> TlsFiles:
    return TlsFiles(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "server.p12",
    )


def make_certificates(directory: Path, host: str, keystore_password: str) -> TlsFiles:
    files = tls_files(directory)
    if files.exist():
        return files
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ToolMissingError("openssl not found: install it (Debian: apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_key = directory / "ca.key"
    csr = directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text(
        f"subjectAltName=DNS:localhost,IP:{host}\nextendedKeyUsage=serverAuth\n"
        "basicConstraints=CA:FALSE\n"
    )
    days = "3650"
    steps = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            ca_key,
            "-out",
            files.ca,
            "-days",
            days,
            "-subj",
            "/CN=onoff-bridge local CA",
        ],
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            files.key,
            "-out",
            csr,
            "-subj",
            "/CN=localhost",
        ],
        [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            files.ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            files.certificate,
            "-days",
            days,
            "-extfile",
            extensions,
        ],
        [
            "pkcs12",
            "-export",
            "-in",
            files.certificate,
            "-inkey",
            files.key,
            "-certfile",
            files.ca,
            "-name",
            "broker",
            "-out",
            files.keystore,
            "-passout",
            f"pass:{keystore_password}",
        ],
    ]
    for step in steps:
        result = subprocess.run(
            [openssl, *map(str, step)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ServiceStartError(f"openssl {step[0]} failed: {result.stderr[-400:]}")
    for path in (ca_key, files.key, files.keystore):
        path.chmod(0o600)
    csr.unlink()
    return files
