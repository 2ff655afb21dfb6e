"""The baseline for the ingress benchmark: a Starlette endpoint that parses JSON and answers 200."""

from __future__ import annotations

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def accept(request: Request) -> Response:
    orjson.loads(await request.body())
    return JSONResponse({})


app = Starlette(routes=[Route("/v1/onoff/cdr", accept, methods=["POST"])])

if __name__ == "__main__":
    import sys

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
