"""The Admin service (understanding.v1.Admin): operator RPCs across tenants.

Served by the same wrapper as the tenant API (`build_handler` with the Admin
descriptor: parse checks, error mapping, access log, metrics), with its own
identity (`AdminIdentity`: admin keys, never tenant keys).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from understanding import codec
from understanding.api.server import Call
from understanding.core.reindex import OnlineReindex, ReindexState
from understanding.domain import NotFound, Unavailable
from understanding.v1 import admin_pb2

ADMIN_SERVICE_NAME = "understanding.v1.Admin"
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["Admin"]


def progress_pb(state: ReindexState) -> admin_pb2.ReindexProgress:
    return admin_pb2.ReindexProgress(
        phase=admin_pb2.ReindexPhase.Value(f"REINDEX_PHASE_{state.phase.name}"),
        alias=state.alias,
        from_collection=state.from_collection,
        to_collection=state.to_collection,
        model=codec.model_pb(state.model) if state.model is not None else None,
        total_points=state.total_points,
        done_points=state.done_points,
        embedded_points=state.embedded_points,
        removed_points=state.removed_points,
        without_text_points=state.without_text_points,
        passes=state.passes,
        switched=state.switched,
        elapsed_seconds=round(state.elapsed_s, 3),
        write_pause_seconds=round(state.write_pause_s, 4),
        message=state.message,
        target_points=state.target_points,
    )


class AdminServicer:
    def __init__(self, reindex: Callable[[], OnlineReindex | None]) -> None:
        self._get_reindex = reindex

    @property
    def _reindex(self) -> OnlineReindex:
        reindex = self._get_reindex()
        if reindex is None:
            raise Unavailable("the service is still starting: retry when it is SERVING")
        return reindex

    async def Reindex(self, request: admin_pb2.ReindexRequest, call: Call) -> AsyncIterator[admin_pb2.ReindexProgress]:
        reindex = self._reindex
        state = await reindex.start(request.model_path, batch_size=int(request.batch_size), no_switch=request.no_switch)
        async for snapshot in reindex.watch(state):
            yield progress_pb(snapshot)

    async def GetReindex(self, request: admin_pb2.GetReindexRequest, call: Call) -> admin_pb2.ReindexProgress:
        state = self._reindex.state
        if state is None:
            raise NotFound("no reindex since this server started")
        return progress_pb(state.snapshot())
