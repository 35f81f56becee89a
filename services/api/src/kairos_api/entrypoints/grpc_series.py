"""gRPC servicer of kairos.posts.v1.SeriesService: translates requests to `service_layer.series`."""

from __future__ import annotations

from typing import Any

import grpc

from kairos.posts.v1 import posts_pb2, series_pb2, series_pb2_grpc
from kairos_api.adapters import convert
from kairos_api.adapters.orm import Series
from kairos_api.entrypoints.auth import Authenticator
from kairos_api.entrypoints.grpc_posts import target_inputs
from kairos_api.service_layer import series
from kairos_api.service_layer.application import Application

Context = grpc.aio.ServicerContext[Any, Any]

_STATUSES = {
    series.ACTIVE: series_pb2.SERIES_STATUS_ACTIVE,
    series.PAUSED: series_pb2.SERIES_STATUS_PAUSED,
}
_SCOPES = {
    series_pb2.SERIES_SCOPE_THIS: "this",
    series_pb2.SERIES_SCOPE_FOLLOWING: "following",
    series_pb2.SERIES_SCOPE_ALL: "all",
}


def series_to_proto(row: Series) -> series_pb2.Series:
    template = series.template_of(row)
    return series_pb2.Series(
        id=str(row.id),
        template=series_pb2.SeriesTemplate(
            content=template.content,
            media_urls=template.media_urls,
            media_ids=template.media_ids,
            targets=[
                posts_pb2.TargetSpec(
                    account_id=t.account_id,
                    content_override=t.content_override,
                    settings=t.settings,
                )
                for t in template.targets
            ],
            campaign=template.campaign,
            tags=template.tags,
            notes=template.notes,
            approval_required=template.approval_required,
            stale_after=convert.duration(template.stale_after),
        ),
        recurrence=series_pb2.Recurrence(
            rule=row.rule,
            start=posts_pb2.LocalDateTime(date_time=row.start_local, time_zone=row.time_zone),
        ),
        status=_STATUSES.get(row.status, series_pb2.SERIES_STATUS_UNSPECIFIED),
        materialised_until=convert.timestamp(row.materialised_until),
        status_reason=row.status_reason,
        split_from=str(row.split_from) if row.split_from else "",
        created_at=convert.timestamp(row.created_at),
        updated_at=convert.timestamp(row.updated_at),
    )


def template_input(message: series_pb2.SeriesTemplate) -> series.Template:
    return series.Template(
        content=message.content,
        targets=target_inputs(message.targets),
        media_urls=list(message.media_urls),
        media_ids=list(message.media_ids),
        campaign=message.campaign,
        tags=list(message.tags),
        notes=message.notes,
        approval_required=message.approval_required,
        stale_after=(
            convert.from_duration(message.stale_after, "template.stale_after")
            if message.HasField("stale_after")
            else None
        ),
    )


def recurrence_input(message: series_pb2.Recurrence) -> series.RecurrenceInput:
    return series.RecurrenceInput(
        rule=message.rule,
        start_local=message.start.date_time,
        time_zone=message.start.time_zone,
    )


class SeriesServicer(series_pb2_grpc.SeriesServiceServicer):
    """Recurring posts of one tenant per call."""

    def __init__(self, app: Application, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def CreateSeries(
        self, request: series_pb2.CreateSeriesRequest, context: Context
    ) -> series_pb2.CreateSeriesResponse:
        tenant = await self.auth.tenant(context)
        row, records = await series.create_series(
            self.app,
            tenant,
            template_input(request.template),
            recurrence_input(request.recurrence),
            request.request_id,
        )
        return series_pb2.CreateSeriesResponse(
            series=series_to_proto(row),
            occurrences=[convert.post_to_proto(r) for r in records],
        )

    async def GetSeries(
        self, request: series_pb2.GetSeriesRequest, context: Context
    ) -> series_pb2.GetSeriesResponse:
        tenant = await self.auth.tenant(context)
        row = await series.get_series(self.app, tenant, request.series_id)
        return series_pb2.GetSeriesResponse(series=series_to_proto(row))

    async def ListSeries(
        self, request: series_pb2.ListSeriesRequest, context: Context
    ) -> series_pb2.ListSeriesResponse:
        tenant = await self.auth.tenant(context)
        rows, token = await series.list_series(
            self.app, tenant, request.page_size, request.page_token
        )
        return series_pb2.ListSeriesResponse(
            series=[series_to_proto(r) for r in rows], next_page_token=token
        )

    async def UpdateSeries(
        self, request: series_pb2.UpdateSeriesRequest, context: Context
    ) -> series_pb2.UpdateSeriesResponse:
        tenant = await self.auth.tenant(context)
        command = series.UpdateSeries(
            series_id=request.series_id,
            scope=_SCOPES.get(request.scope, ""),
            paths=list(request.update_mask.paths),
            post_id=request.post_id,
            template=template_input(request.template),
            recurrence=(
                recurrence_input(request.recurrence) if request.HasField("recurrence") else None
            ),
        )
        row, post = await series.update_series(self.app, tenant, command)
        return series_pb2.UpdateSeriesResponse(
            series=series_to_proto(row) if row is not None else None,
            post=convert.post_to_proto(post, with_attempts=False) if post is not None else None,
        )

    async def DeleteSeries(
        self, request: series_pb2.DeleteSeriesRequest, context: Context
    ) -> series_pb2.DeleteSeriesResponse:
        tenant = await self.auth.tenant(context)
        cancelled = await series.delete_series(
            self.app,
            tenant,
            request.series_id,
            _SCOPES.get(request.scope, ""),
            request.post_id,
        )
        return series_pb2.DeleteSeriesResponse(cancelled=cancelled)

    async def PauseSeries(
        self, request: series_pb2.PauseSeriesRequest, context: Context
    ) -> series_pb2.PauseSeriesResponse:
        tenant = await self.auth.tenant(context)
        row = await series.pause_series(self.app, tenant, request.series_id)
        return series_pb2.PauseSeriesResponse(series=series_to_proto(row))

    async def ResumeSeries(
        self, request: series_pb2.ResumeSeriesRequest, context: Context
    ) -> series_pb2.ResumeSeriesResponse:
        tenant = await self.auth.tenant(context)
        row = await series.resume_series(self.app, tenant, request.series_id)
        return series_pb2.ResumeSeriesResponse(series=series_to_proto(row))

    async def PreviewRecurrence(
        self, request: series_pb2.PreviewRecurrenceRequest, context: Context
    ) -> series_pb2.PreviewRecurrenceResponse:
        await self.auth.tenant(context)
        after = (
            convert.from_timestamp(request.after, "after") if request.HasField("after") else None
        )
        pairs = series.preview(self.app, recurrence_input(request.recurrence), request.count, after)
        response = series_pb2.PreviewRecurrenceResponse(
            local_times=[wall.isoformat() for _, wall in pairs]
        )
        for instant, _ in pairs:
            convert.set_timestamp(response.instants.add(), instant)
        return response
