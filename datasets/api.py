"""The write API: events, users and items, authenticated by a project's API key.

Views only unwrap the batch, call a service and shape the answer. Records are validated in
plain Python (datasets.ingest.records) rather than by DRF serializers, which took six times
as long for a batch of events.
"""

from django.contrib.auth.decorators import login_not_required
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import api_schema, services
from datasets.ingest.records import MAX_RECORDS_PER_REQUEST
from recsite.api_errors import InvalidRecords


class ApiKeyView(APIView):
    """Base class of /api/v1/ views: API-key authentication (the REST_FRAMEWORK defaults,
    see datasets.authentication), exempt from LoginRequiredMiddleware, which would otherwise
    redirect API clients to /login/."""

    @classmethod
    def as_view(cls, **initkwargs):
        return login_not_required(super().as_view(**initkwargs))


def batch_from(data, key: str) -> list:
    """The list of records under ``key`` of a JSON body, or a 400 that says what to send."""
    if not isinstance(data, dict):
        raise ValidationError(
            {"non_field_errors": [f'Send a JSON object such as {{"{key}": [...]}}.']}
        )
    unknown = sorted(str(name) for name in data if name != key)
    if unknown:
        problem = f'Unknown field; send only "{key}" (the API key decides the project).'
        raise ValidationError({name: [problem] for name in unknown})
    batch = data.get(key)
    if not isinstance(batch, list):
        raise ValidationError({key: [f"Required: a list of 1 to {MAX_RECORDS_PER_REQUEST}."]})
    if not 1 <= len(batch) <= MAX_RECORDS_PER_REQUEST:
        raise ValidationError(
            {
                key: [
                    f"Send 1 to {MAX_RECORDS_PER_REQUEST} {key} per request (got {len(batch)}); "
                    "split larger batches."
                ]
            }
        )
    return batch


def write_response(result: services.WriteResult, *, noun: str) -> Response:
    """200 with the counts when anything was stored; 400 when no record was valid."""
    if not result.accepted:
        raise InvalidRecords(
            f"None of the {len(result.rejected)} {noun} is valid; nothing was stored.",
            result.rejected,
        )
    return Response({"accepted": result.accepted, "rejected": result.rejected})


class EventsView(ApiKeyView):
    @extend_schema(
        summary="Record a batch of events",
        request=api_schema.EventBatchSerializer,
        responses=api_schema.WRITE_RESPONSES,
    )
    def post(self, request):
        events = batch_from(request.data, "events")
        result = services.record_events(project=request.auth.project, events=events)
        return write_response(result, noun="events")


class UsersView(ApiKeyView):
    @extend_schema(
        summary="Add or replace users",
        request=api_schema.UserBatchSerializer,
        responses=api_schema.WRITE_RESPONSES,
    )
    def post(self, request):
        users = batch_from(request.data, "users")
        result = services.upsert_end_users(project=request.auth.project, users=users)
        return write_response(result, noun="users")


class ItemsView(ApiKeyView):
    @extend_schema(
        summary="Add or replace items",
        request=api_schema.ItemBatchSerializer,
        responses=api_schema.WRITE_RESPONSES,
    )
    def post(self, request):
        items = batch_from(request.data, "items")
        result = services.upsert_items(project=request.auth.project, items=items)
        return write_response(result, noun="items")
