"""GetRecommendations and GetPersonalizedRanking (Personalize Runtime) over feeds.recommending.

Request and response shapes are those of ``botocore/data/personalize-runtime/*/service-2.json``:

- ``POST /personalize/recommendations``: ``campaignArn`` (or ``recommenderArn``, which names a
  campaign too), ``userId`` (recommendations) or ``itemId`` (related items; ``userId`` then
  only feeds the filter and the exclusion of the user's items), ``numResults`` (1-500, 25 by
  default, at most 50 with ``metadataColumns``), ``context``, ``filterArn`` +
  ``filterValues``, ``promotions`` (one: ``name``, ``percentPromotedItems``, ``filterArn``,
  ``filterValues``) and ``metadataColumns`` (``{"ITEMS": [column, ...]}``) ->
  ``itemList`` [``itemId``, ``score``, ``promotionName``, ``metadata``, ``reason``] and
  ``recommendationId``;
- ``POST /personalize/personalize-ranking``: ``campaignArn``, ``userId``, ``inputList`` (1-500
  item ids), ``filterArn`` + ``filterValues``, ``metadataColumns`` ->
  ``personalizedRanking`` and ``recommendationId``.

Every failure is an AWS JSON error (errors.py), so boto3 raises its modelled exceptions.
"""

from __future__ import annotations

import json
import logging
import re

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from datasets.authentication import HasApiKey
from feeds import recommending, selectors
from feeds.catalog import CREATION_FIELD, catalog_for
from feeds.personalize import arns
from feeds.personalize.auth import SigV4Authentication
from feeds.personalize.errors import (
    InvalidInput,
    PersonalizeError,
    ResourceNotFound,
    as_personalize_error,
    aws_error_response,
    internal_error,
)
from models_app.serving import CampaignNotFound

logger = logging.getLogger("django.request")

MAX_RESULTS = recommending.MAX_RESULTS  # 500, as AWS
MAX_RESULTS_WITH_METADATA = 50  # AWS's limit when metadataColumns is given
MAX_INPUT_LIST = recommending.MAX_RANK_ITEMS  # 500
MAX_ID_LENGTH = 256
MAX_CONTEXT = 150
MAX_FILTER_VALUES = 25
MAX_METADATA_COLUMNS = 99
MAX_MAP_KEY = 150  # context and filterValues: AttributeName / AttributeValue in the model
MAX_MAP_VALUE = 1000
_PROMOTION_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,62}$")
_FILTER_VALUE_NAME = re.compile(r"^[A-Za-z0-9_]{1,50}$")

RECOMMENDATIONS_FIELDS = {
    "campaignArn",
    "recommenderArn",
    "userId",
    "itemId",
    "numResults",
    "context",
    "filterArn",
    "filterValues",
    "promotions",
    "metadataColumns",
}
RANKING_FIELDS = {
    "campaignArn",
    "userId",
    "inputList",
    "context",
    "filterArn",
    "filterValues",
    "metadataColumns",
}
PROMOTION_FIELDS = {"name", "percentPromotedItems", "filterArn", "filterValues"}


# --------------------------------------------------------------------------- the base view


class _AnyAccept(BaseContentNegotiation):
    """JSON whatever ``Accept`` says (the SDKs send none, or ``*/*``)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class PersonalizeView(APIView):
    """A Personalize operation: SigV4 authentication, the API key's rate limit (settings
    REST_FRAMEWORK), a JSON body read as is, and AWS JSON errors for everything."""

    authentication_classes = [SigV4Authentication]
    permission_classes = [HasApiKey]
    parser_classes = []
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _AnyAccept
    http_method_names = ["post"]
    schema = None  # not part of the /api/v1/ OpenAPI schema: botocore's model is the contract

    @classmethod
    def as_view(cls, **initkwargs):
        return login_not_required(super().as_view(**initkwargs))

    def handle_exception(self, exc):
        if isinstance(exc, RequestDataTooBig):
            exc = InvalidInput("The request body is too large.", status=413)
        error = as_personalize_error(exc)
        if error is None:
            logger.error("Internal Server Error: %s", self.request.path, exc_info=exc)
            return internal_error()
        headers = {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(int(exc.wait) + 1)
        return aws_error_response(error, headers)

    def body(self, request) -> dict:
        raw = request._request.body
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PersonalizeError(
                f"The request body is not valid JSON ({exc}).", code="SerializationException"
            ) from None
        if not isinstance(data, dict):
            raise PersonalizeError(
                "The request body must be a JSON object.", code="SerializationException"
            )
        return data


class GetRecommendationsView(PersonalizeView):
    def post(self, request):
        data = self.body(request)
        return JsonResponse(get_recommendations(request.auth.project, data))


class GetPersonalizedRankingView(PersonalizeView):
    def post(self, request):
        data = self.body(request)
        return JsonResponse(get_personalized_ranking(request.auth.project, data))


# --------------------------------------------------------------------------- operations


def get_recommendations(project, data: dict) -> dict:
    """GetRecommendations: ``data`` is the request body, the result the response body."""
    _only(data, RECOMMENDATIONS_FIELDS, "GetRecommendations")
    campaign = _campaign_name(project, data)
    user_id = _id(data.get("userId"), "userId")
    item_id = _id(data.get("itemId"), "itemId")
    if user_id is None and item_id is None:
        raise InvalidInput("Send userId (recommendations for a user) or itemId (related items).")
    metadata_columns = _metadata_columns(project, data.get("metadataColumns"))
    num_results = _num_results(data.get("numResults"), with_metadata=bool(metadata_columns))
    context = _string_map(data.get("context"), "context", MAX_CONTEXT)
    filter_expression, filter_values = _request_filter(project, data)
    promotions = _promotions(project, data.get("promotions"))
    try:
        if item_id is not None:
            served = recommending.related(
                project,
                item_id=item_id,
                num_results=num_results,
                campaign=campaign,
                filter=filter_expression,
                filter_values=filter_values,
                user_id=user_id,
                promotions=promotions,
            )
        else:
            served = recommending.recommend(
                project,
                user_id=user_id,
                num_results=num_results,
                campaign=campaign,
                filter=filter_expression,
                filter_values=filter_values,
                context=context or None,
                promotions=promotions,
            )
    except CampaignNotFound as exc:
        raise ResourceNotFound(f"{_not_found_campaign(data)} {exc}") from None
    return {
        "itemList": _item_list(project, served, metadata_columns),
        "recommendationId": served.recommendation_id,
    }


def get_personalized_ranking(project, data: dict) -> dict:
    """GetPersonalizedRanking: ``inputList`` ranked for ``userId``."""
    _only(data, RANKING_FIELDS, "GetPersonalizedRanking")
    if not data.get("campaignArn"):
        raise InvalidInput("campaignArn is required for GetPersonalizedRanking.")
    campaign = _campaign_name(project, data)
    user_id = _id(data.get("userId"), "userId")
    if user_id is None:
        raise InvalidInput("userId is required for GetPersonalizedRanking.")
    input_list = data.get("inputList")
    if not isinstance(input_list, list) or not all(
        isinstance(i, str) and i and len(i) <= MAX_ID_LENGTH and "\x00" not in i for i in input_list
    ):
        raise InvalidInput(
            f"inputList must be a list of item ids (text of 1 to {MAX_ID_LENGTH} characters)."
        )
    if not 1 <= len(input_list) <= MAX_INPUT_LIST:
        raise InvalidInput(
            f"inputList holds {len(input_list)} item ids; send 1 to {MAX_INPUT_LIST}."
        )
    _string_map(data.get("context"), "context", MAX_CONTEXT)  # validated, not used by ranking
    metadata_columns = _metadata_columns(project, data.get("metadataColumns"))
    filter_expression, filter_values = _request_filter(project, data)
    try:
        served = recommending.rank(
            project,
            user_id=user_id,
            item_ids=input_list,
            campaign=campaign,
            filter=filter_expression,
            filter_values=filter_values,
        )
    except CampaignNotFound as exc:
        raise ResourceNotFound(f"{_not_found_campaign(data)} {exc}") from None
    return {
        "personalizedRanking": _item_list(project, served, metadata_columns),
        "recommendationId": served.recommendation_id,
    }


# --------------------------------------------------------------------------- input checks


def _only(data: dict, allowed: set[str], operation: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise InvalidInput(
            f"{operation} has no parameter {', '.join(unknown)[:200]}; it takes "
            f"{', '.join(sorted(allowed))}."
        )


def _campaign_name(project, data: dict) -> str:
    campaign_arn, recommender_arn = data.get("campaignArn"), data.get("recommenderArn")
    if campaign_arn and recommender_arn:
        raise InvalidInput("Send campaignArn or recommenderArn, not both.")
    if campaign_arn:
        return arns.resolve_arn(campaign_arn, project, "campaign", "campaignArn").name
    if recommender_arn:
        return arns.resolve_arn(recommender_arn, project, "recommender", "recommenderArn").name
    raise InvalidInput(
        "campaignArn (or recommenderArn) is required: copy the campaign's ARN from its page in "
        "recsite."
    )


def _not_found_campaign(data: dict) -> str:
    arn = data.get("campaignArn") or data.get("recommenderArn") or ""
    kind = "campaign" if data.get("campaignArn") else "recommender"
    return arns.not_found_message(kind, arn)


def _id(value, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text.")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInput(f"{name} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}.")
    if "\x00" in value:
        raise InvalidInput(f"{name} contains a NUL character; remove it.")
    return value or None


def _num_results(value, *, with_metadata: bool) -> int:
    if value is None:
        return recommending.DEFAULT_RESULTS
    limit = MAX_RESULTS_WITH_METADATA if with_metadata else MAX_RESULTS
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"numResults must be a whole number from 1 to {limit}.")
    if not 1 <= value <= limit:
        extra = " when metadataColumns is given" if with_metadata else ""
        raise InvalidInput(f"numResults must be from 1 to {limit}{extra}; got {value}.")
    return value


def _string_map(value, name: str, limit: int) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInput(f'{name} must be a map of names to text, e.g. {{"DEVICE": "mobile"}}.')
    if len(value) > limit:
        raise InvalidInput(f"{name} has {len(value)} entries; the limit is {limit}.")
    for key, text in value.items():
        if not key or len(key) > MAX_MAP_KEY or len(text) > MAX_MAP_VALUE:
            raise InvalidInput(
                f"{name}: names are 1 to {MAX_MAP_KEY} characters and values at most "
                f"{MAX_MAP_VALUE}; “{key[:40]}” does not fit."
            )
    return value


def _request_filter(project, data: dict) -> tuple[str | None, dict | None]:
    """The request's filter expression (from filterArn) and its filterValues."""
    expression = _filter(project, data.get("filterArn"), "filterArn")
    values = _filter_values(data.get("filterValues"), "filterValues")
    if values and expression is None:
        raise InvalidInput("filterValues were sent without a filterArn.")
    return expression, values


def _filter(project, arn, name: str) -> str | None:
    """The expression of the saved filter ``arn`` names (ResourceNotFound if none)."""
    if arn is None or arn == "":
        return None
    parsed = arns.resolve_arn(arn, project, "filter", name)
    expression = selectors.saved_filter_expression(project, parsed.name)
    if expression is None:
        raise ResourceNotFound(arns.not_found_message("filter", arn))
    return expression


def _filter_values(value, name: str) -> dict | None:
    """Personalize's filterValues: names to text such as ``"\\"Shoes\\",\\"Bags\\""`` (the
    filter engine reads that format as is)."""
    values = _string_map(value, name, MAX_FILTER_VALUES)
    for key in values:
        if not _FILTER_VALUE_NAME.match(key):
            raise InvalidInput(
                f"{name} key “{key[:60]}” must be the filter's parameter name without $ "
                "(letters, digits and _)."
            )
    return values or None


def _promotions(project, value) -> list[recommending.RequestPromotion] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 1:
        raise InvalidInput("promotions must be a list of at most one promotion.")
    result = []
    for promo in value:
        if not isinstance(promo, dict):
            raise InvalidInput("A promotion must be an object with name, percentPromotedItems, ...")
        _only(promo, PROMOTION_FIELDS, "A promotion")
        name = promo.get("name")
        if not isinstance(name, str) or not _PROMOTION_NAME.match(name):
            raise InvalidInput(
                "promotions[0].name must be 1 to 63 letters, digits, - or _, starting with a "
                "letter or digit."
            )
        percent = promo.get("percentPromotedItems")
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
            raise InvalidInput(
                f"promotions[0].percentPromotedItems must be a whole number from 1 to 100; got "
                f"{str(percent)[:20]}."
            )
        expression = _filter(project, promo.get("filterArn"), "promotions[0].filterArn")
        if expression is None:
            raise InvalidInput("promotions[0].filterArn is required: the items to promote.")
        values = _filter_values(promo.get("filterValues"), "promotions[0].filterValues")
        result.append(
            recommending.RequestPromotion(
                name=name,
                expression=expression,
                filter_values=values,
                share=percent / 100,
                reason=f"promoted: {name}",
            )
        )
    return result


def _metadata_columns(project, value) -> list[str]:
    """The catalogue columns asked for (``{"ITEMS": [...]}``), with their stored spelling."""
    if value is None:
        return []
    if not isinstance(value, dict) or len(value) > 1:
        raise InvalidInput('metadataColumns must be a map such as {"ITEMS": ["TITLE", "PRICE"]}.')
    if not value:
        return []
    (dataset, columns), *_ = value.items()
    if dataset != "ITEMS":
        raise InvalidInput(f"metadataColumns supports the ITEMS dataset only; got {dataset!r}.")
    if not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns):
        raise InvalidInput("metadataColumns.ITEMS must be a list of column names.")
    if len(columns) > MAX_METADATA_COLUMNS:
        raise InvalidInput(f"metadataColumns.ITEMS lists more than {MAX_METADATA_COLUMNS} columns.")
    catalog = catalog_for(project)
    known = {f.name.lower(): f.name for f in catalog.schema["items"]}
    known.setdefault(CREATION_FIELD.lower(), CREATION_FIELD)
    resolved = []
    for column in columns:
        stored = known.get(column.lower())
        if stored is None:
            names = ", ".join(sorted(known.values()))[:400]
            raise InvalidInput(
                f"metadataColumns: the items have no column “{column[:60]}” (columns: {names})."
            )
        resolved.append(stored)
    return list(dict.fromkeys(resolved))


# --------------------------------------------------------------------------- output


def _item_list(project, served, metadata_columns) -> list[dict]:
    """Personalize's item entries for a ``recommending.Served`` answer (its ``promoted_by``:
    item id -> the promotion that placed it)."""
    catalog = catalog_for(project) if metadata_columns else None
    promoted_by = served.promoted_by
    result = []
    for item in served.items:
        entry = {"itemId": item["item_id"]}
        if item.get("score") is not None:
            entry["score"] = item["score"]
        name = promoted_by.get(item["item_id"])
        if name:
            entry["promotionName"] = name
        if catalog is not None:
            row = catalog.row_of(item["item_id"])
            attributes = catalog.attributes_of(row) if row is not None else {}
            entry["metadata"] = {
                column: _text(attributes.get(column))
                for column in metadata_columns
                if attributes.get(column) is not None
            }
        if item.get("reason"):
            entry["reason"] = [item["reason"]]
        result.append(entry)
    return result


def _text(value) -> str:
    if isinstance(value, list | tuple):
        return "|".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
