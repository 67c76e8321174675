"""The serving API: recommendations, related items and re-ranking (docs/serving.md).

Views parse the query or body, call feeds.recommending and shape the answer; serving errors
become the API's error format (recsite/api_errors.py) with, for filter mistakes, the
position and what was expected under ``error.filter``.
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from datasets.api import ApiKeyView
from feeds import api_schema, recommending
from feeds.recommending import MAX_RANK_ITEMS, InvalidRequest, ServingError

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


def error_response(exc: ServingError) -> Response:
    body = {"code": exc.code, "message": exc.message}
    if exc.field:
        body["fields"] = {exc.field: [exc.message]}
    if exc.detail:
        body["filter"] = exc.detail
    return Response({"error": body}, status=exc.status)


def _flag(raw, name: str, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InvalidRequest(f"{name} must be true or false; got {str(raw)[:20]!r}.", field=name)


def _text(raw, name: str, limit: int = 256) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidRequest(f"{name} must be text.", field=name)
    if len(raw) > limit:
        raise InvalidRequest(
            f"{name} is {len(raw)} characters long; the limit is {limit}.", field=name
        )
    if "\x00" in raw:
        raise InvalidRequest(f"{name} contains a NUL character (\\u0000); remove it.", field=name)
    return raw


class RecommendationsView(ApiKeyView):
    @extend_schema(
        summary="Recommendations for a user",
        parameters=api_schema.RECOMMENDATIONS_PARAMETERS,
        responses={200: api_schema.RecommendationsResponseSerializer, **api_schema.ERRORS},
    )
    def get(self, request):
        query = request.query_params
        try:
            served = recommending.recommend(
                request.auth.project,
                user_id=_text(query.get("user_id"), "user_id") or None,
                num_results=recommending.check_num_results(query.get("num_results")),
                campaign=_text(query.get("campaign"), "campaign"),
                filter=_text(query.get("filter"), "filter", 10_000),
                filter_values=recommending.parse_filter_values(query.get("filter_values")),
                context=recommending.parse_context(query.get("context")),
                exclude_interacted=_flag(
                    query.get("exclude_interacted"), "exclude_interacted", True
                ),
            )
        except ServingError as exc:
            return error_response(exc)
        return Response(served.as_dict())


class RelatedItemsView(ApiKeyView):
    @extend_schema(
        summary="Items related to an item",
        parameters=[
            OpenApiParameter("item_id", str, OpenApiParameter.PATH, description="The item's id."),
            *api_schema.RELATED_PARAMETERS,
        ],
        responses={200: api_schema.RecommendationsResponseSerializer, **api_schema.ERRORS},
    )
    def get(self, request, item_id: str):
        query = request.query_params
        try:
            served = recommending.related(
                request.auth.project,
                item_id=_text(item_id, "item_id"),
                num_results=recommending.check_num_results(query.get("num_results")),
                campaign=_text(query.get("campaign"), "campaign"),
                filter=_text(query.get("filter"), "filter", 10_000),
                filter_values=recommending.parse_filter_values(query.get("filter_values")),
                user_id=_text(query.get("user_id"), "user_id") or None,
                exclude_interacted=_flag(
                    query.get("exclude_interacted"), "exclude_interacted", True
                ),
            )
        except ServingError as exc:
            return error_response(exc)
        return Response(served.as_dict())


RANK_FIELDS = {"user_id", "item_ids", "campaign", "filter", "filter_values"}


class RankView(ApiKeyView):
    @extend_schema(
        summary="Re-rank items for a user",
        request=api_schema.RankRequestSerializer,
        responses={200: api_schema.RankResponseSerializer, **api_schema.ERRORS},
    )
    def post(self, request):
        data = request.data
        try:
            if not isinstance(data, dict):
                raise InvalidRequest(
                    'Send a JSON object such as {"user_id": "u1", "item_ids": ["a", "b"]}.'
                )
            unknown = sorted(str(k) for k in data if k not in RANK_FIELDS)
            if unknown:
                raise InvalidRequest(
                    f"Unknown field {', '.join(unknown)}; send only "
                    f"{', '.join(sorted(RANK_FIELDS))}.",
                    field=unknown[0],
                )
            item_ids = data.get("item_ids")
            if not isinstance(item_ids, list) or not all(
                isinstance(i, str) and i and "\x00" not in i for i in item_ids
            ):
                raise InvalidRequest(
                    "item_ids must be a list of item ids (non-empty text).", field="item_ids"
                )
            if not 1 <= len(item_ids) <= MAX_RANK_ITEMS:
                raise InvalidRequest(
                    f"item_ids holds {len(item_ids)} ids; send 1 to {MAX_RANK_ITEMS} per "
                    "request (rank the first ones, or split the list).",
                    field="item_ids",
                )
            served = recommending.rank(
                request.auth.project,
                user_id=_text(data.get("user_id"), "user_id") or None,
                item_ids=item_ids,
                campaign=_text(data.get("campaign"), "campaign"),
                filter=_text(data.get("filter"), "filter", 10_000),
                filter_values=recommending.parse_filter_values(data.get("filter_values")),
            )
        except ServingError as exc:
            return error_response(exc)
        return Response(served.as_dict())


class FeedView(ApiKeyView):
    @extend_schema(
        summary="A page of a feed",
        parameters=api_schema.FEED_PARAMETERS,
        responses={200: api_schema.FeedResponseSerializer, **api_schema.ERRORS},
    )
    def get(self, request, name: str):
        from feeds import feeds

        query = request.query_params
        try:
            result = feeds.serve(
                request.auth.project,
                _text(name, "name", 60),
                user_id=_text(query.get("user_id"), "user_id") or None,
                cursor=_text(query.get("cursor"), "cursor", 4096) or None,
                page_size=feeds.check_page_size(query.get("page_size")),
            )
        except ServingError as exc:
            return error_response(exc)
        return Response(result.as_dict())
