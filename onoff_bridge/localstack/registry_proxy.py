"""An HTTPS reverse proxy that asks for HTTP basic auth in front of the local Apicurio.

Apicurio's own authentication needs a Keycloak; managed registries (Confluent
Cloud, Aiven, Karapace behind a gateway) ask for basic auth over TLS, and this
proxy gives the clients the same: 401 without the right user and password, the
registry's answer otherwise. Run by the secured stack:
`python -m onoff_bridge.localstack.registry_proxy CREDENTIALS_FILE`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def build_proxy(upstream: str, user: str, password: str) -> Starlette:
    client = httpx.AsyncClient(base_url=upstream, timeout=30)
    expected = f"{user}:{password}".encode()

    def authorized(request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        return secrets.compare_digest(given, expected)

    async def forward(request: Request) -> Response:
        if not authorized(request):
            return Response(
                status_code=401, headers={"www-authenticate": 'Basic realm="schema-registry"'}
            )
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _HOP_BY_HOP and k.lower() != "authorization"
        }
        upstream_response = await client.request(
            request.method,
            request.url.path,
            params=request.url.query,
            content=await request.body(),
            headers=headers,
        )
        return Response(
            upstream_response.content,
            status_code=upstream_response.status_code,
            headers={
                k: v
                for k, v in upstream_response.headers.items()
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-encoding"
            },
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def main(config_file: str) -> None:
    config = json.loads(Path(config_file).read_text())
    uvicorn.run(
        build_proxy(config["upstream"], config["user"], config["password"]),
        host=config["host"],
        port=int(config["port"]),
        ssl_certfile=config["certificate"],
        ssl_keyfile=config["key"],
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main(sys.argv[1])
