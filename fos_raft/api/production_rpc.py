"""The Coordinator RPCs of production figures (``ReportProduction``, ``GetProduction``),
served from this replica's `ProductionBook`: a mixin of the Coordinator service, so a
report never becomes a replicated command."""

from __future__ import annotations

import json
from typing import Any

from fos_pb import coordinator_pb2 as pb
from fos_raft.api.production import KEEP_S, ProductionBook

MAX_SINCE_S = KEEP_S  # no figures are kept for longer


class ProductionRpcs:
    production: ProductionBook
    replica_id: str
    replica: Any

    async def _allow_node(self, context: Any, node: str, what: str) -> None:
        raise NotImplementedError  # the service's own

    async def ReportProduction(self, request: pb.ProductionReport,
                               context: Any) -> pb.ProductionAck:
        await self._allow_node(context, request.node_id, "report the production of")
        if request.node_id in self.replica.state.nodes:  # the book holds catalog nodes only
            self.production.record(request)
        return pb.ProductionAck(flow_version=int(self.replica.state.version))

    async def GetProduction(self, request: pb.ProductionRequest,
                            context: Any) -> pb.ProductionReply:
        since = min(max(0.0, float(request.since_s)), MAX_SINCE_S)
        self.production.forget(self.replica.state.nodes)  # decommissioned nodes leave it
        doc = self.production.document(since, self.replica_id)
        return pb.ProductionReply(document=json.dumps(doc, sort_keys=True),
                                  replica_id=self.replica_id)
