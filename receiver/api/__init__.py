"""HTTP handlers: authenticate (middleware), validate, persist, answer. No business logic.

One module per area, each with its own route table: ``ingest`` (webhooks in), ``incidents``
(queries, approve and deny), ``telegram`` (button presses), ``operations`` (reload, health,
the OpenAPI document), ``pause`` (pause and resume), ``quarantine`` (list, lift); ``http``
has what they share.
"""

from __future__ import annotations

from aiohttp import web

from receiver.api import incidents, ingest, operations, pause, quarantine, telegram
from receiver.api.http import error_middleware

routes: list[web.AbstractRouteDef] = [
    *ingest.routes,
    *incidents.routes,
    *telegram.routes,
    *operations.routes,
    *pause.routes,
    *quarantine.routes,
]

__all__ = ["error_middleware", "routes"]
