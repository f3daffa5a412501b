"""How the API's read routes read and answer: on SQLite a short read runs on the event loop,
anything else in a worker thread; the answer is serialised once.

A read route is ``async`` and gives its reads to ``read`` as one function of a connection:
one connection (one transaction, one snapshot) for all of a request's reads. On SQLite, a
read whose cost does not grow with the company (index lookups of one debtor's rows, one
page of an index walk) runs on the event loop: a read of a local file beside the writers
(WAL readers do not wait for them) costs less than the trip to a worker thread and back,
which was most of such a request's time. A read that may walk many rows (a filter no
index answers), and every read on PostgreSQL (the network), runs in a worker thread, so
that the event loop never waits on it.

The route declares its response model for the OpenAPI document and answers with
``answer(model)``: the model, built (and so checked) once, written as JSON once, as
FastAPI writes it, without FastAPI checking it a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cobro.web.deps import WebState

T = TypeVar("T")


async def read(state: WebState, work: Callable[[Connection], T], *, short: bool = True) -> T:
    """``work`` on a reading connection of ``state``'s company: on the event loop when
    ``short`` on SQLite, else in a worker thread."""
    reader = state.reader

    def run() -> T:
        with reader.connect() as conn:
            return work(conn)

    if short and reader.dialect.name == "sqlite":
        return run()
    return await run_in_threadpool(run)


def answer(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as a JSON answer (the bytes FastAPI writes for a response model)."""
    return Response(
        model.model_dump_json(by_alias=True),
        status_code=status_code,
        media_type="application/json",
    )
