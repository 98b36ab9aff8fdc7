"""FastAPI under bench/run: the 3-way aggregate with httpx and asyncio.gather, bodies
spliced as bytes (no JSON round trip), one uvicorn worker pinned to core 0."""

import asyncio
import contextlib

import httpx
from fastapi import FastAPI
from fastapi.responses import Response

UPSTREAM = "http://127.0.0.1:9200"
client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def lifespan(_app):
    global client
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
    async with httpx.AsyncClient(base_url=UPSTREAM, limits=limits, timeout=10.0) as c:
        client = c
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/agg")
async def aggregate() -> Response:
    a, b, c = await asyncio.gather(client.get("/a"), client.get("/b"), client.get("/c"))
    body = b'{"a":' + a.content + b',"b":' + b.content + b',"c":' + c.content + b"}"
    return Response(content=body, media_type="application/json")
