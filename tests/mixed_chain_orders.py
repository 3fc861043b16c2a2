"""The FastAPI ``orders`` service of the mixed chain test, served by a real uvicorn process.

Configured by the environment the test gives it: ``REDIS_URL`` (the test session's
redis-server: traces and the order cache), ``POSTGRES_DSN``, ``PAYMENT_URL`` and
``SLOW_ORDER_SECONDS``. Its handler holds no tracing code: the middleware, the httpx
transport and the instrumented Redis client and PostgreSQL pool make every span.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException, Request

import asynctrace
import asynctrace.asyncpg
import asynctrace.httpx
import asynctrace.redis
from asynctrace.asgi import TraceMiddleware

SLOW_ORDER_ID = 4711
LOAD_ORDER = "SELECT id, status, total, pg_sleep($2) FROM orders WHERE id = $1"


async def _create_orders(connection: asyncpg.Connection) -> None:
    # A temporary table per connection: the test leaves nothing in the database.
    await connection.execute(
        "CREATE TEMP TABLE orders (id int PRIMARY KEY, status text, total numeric)"
    )
    await connection.execute(
        "INSERT INTO orders VALUES (4711, 'open', 99.5), (1313, 'open', 12), (7, 'open', 1)"
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    asynctrace.configure(service="orders", redis_url=os.environ["REDIS_URL"], max_delay_s=0.05)
    pool = await asyncpg.create_pool(
        os.environ["POSTGRES_DSN"], min_size=1, max_size=1, init=_create_orders
    )
    app.state.db = asynctrace.asyncpg.instrument(pool)
    app.state.cache = asynctrace.redis.instrument(aioredis.Redis.from_url(os.environ["REDIS_URL"]))
    app.state.http = httpx.AsyncClient(
        transport=asynctrace.httpx.transport(), timeout=httpx.Timeout(10.0)
    )
    try:
        yield
    finally:
        await app.state.http.aclose()
        await app.state.cache.aclose()
        await pool.close()
        await asynctrace.shutdown()  # everything this process traced is in Redis


app = FastAPI(lifespan=lifespan)
app.add_middleware(TraceMiddleware, service="orders")


@app.post("/orders/{order_id}/checkout")
async def checkout(order_id: int, request: Request) -> dict[str, Any]:
    state = request.app.state
    await state.cache.get(f"order:{order_id}")
    delay_s = float(os.environ["SLOW_ORDER_SECONDS"]) if order_id == SLOW_ORDER_ID else 0.0
    row = await state.db.fetchrow(LOAD_ORDER, order_id, delay_s)
    if row is None:
        raise HTTPException(status_code=404, detail="no such order")
    charge = await state.http.post(f"{os.environ['PAYMENT_URL']}/charges/{order_id}")
    if charge.status_code >= 500:
        raise HTTPException(status_code=502, detail="payment failed")
    async with state.cache.pipeline(transaction=False) as pipe:
        pipe.set(f"order:{order_id}", "paid").expire(f"order:{order_id}", 60)
        await pipe.execute()
    return {"order": order_id, "status": "paid", "total": str(row["total"])}
