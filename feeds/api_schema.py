"""What the OpenAPI schema says about the serving API (drf-spectacular only).

Requests are parsed by feeds/api.py and feeds/recommending.py (faster than serializers);
these classes describe the same parameters and bodies, with the limits taken from there.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from datasets.api_schema import ErrorSerializer
from feeds.recommending import DEFAULT_RESULTS, MAX_RANK_ITEMS, MAX_RESULTS

SOURCES_HELP = (
    "Where the item came from: model (the campaign's model), exploration (a new item given a "
    "chance), promotion, popular (fallback or cold start), category (related items of an item "
    "the model does not know), unknown (rank: item unknown to the model)."
)
FILTER_HELP = (
    "A saved filter's name, or an expression such as "
    "'INCLUDE ItemID WHERE Items.CATEGORY IN ($CATS)' (docs/filters.md)."
)
FILTER_VALUES_HELP = (
    'JSON object of the filter\'s $PARAMETER values, e.g. {"CATS": ["Shoes", "Bags"]}.'
)


class ServedItemSerializer(serializers.Serializer):
    item_id = serializers.CharField()
    score = serializers.FloatField(
        allow_null=True, help_text="The model's relevance score; null when not scored."
    )
    source = serializers.CharField(help_text=SOURCES_HELP)
    reason = serializers.CharField(
        help_text="Why, in words: 'because you viewed …', 'popular', 'trending now', "
        "'popular in <category>', 'promoted: <name>', 'new arrival', 'similar to …'."
    )


class RecommendationsResponseSerializer(serializers.Serializer):
    recommendation_id = serializers.CharField(
        help_text="Send it back with the events this response leads to (attribution)."
    )
    campaign = serializers.CharField()
    version = serializers.IntegerField(help_text="The model version that served.")
    items = ServedItemSerializer(many=True)


class RankRequestSerializer(serializers.Serializer):
    user_id = serializers.CharField(required=False, allow_blank=True)
    item_ids = serializers.ListField(
        child=serializers.CharField(), min_length=1, max_length=MAX_RANK_ITEMS
    )
    campaign = serializers.CharField(required=False)
    filter = serializers.CharField(required=False, help_text=FILTER_HELP)
    filter_values = serializers.DictField(required=False, help_text=FILTER_VALUES_HELP)


class RankResponseSerializer(RecommendationsResponseSerializer):
    unknown_items = serializers.ListField(
        child=serializers.CharField(),
        help_text="Items the model does not know (placed last, in the given order).",
    )
    filtered_items = serializers.ListField(
        child=serializers.CharField(), help_text="Items the filter removed."
    )


def _query(name, type_, description, **kwargs):
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, description=description, **kwargs)


NUM_RESULTS = _query(
    "num_results",
    OpenApiTypes.INT,
    f"How many items (1 to {MAX_RESULTS}, default {DEFAULT_RESULTS}).",
)
CAMPAIGN = _query(
    "campaign",
    OpenApiTypes.STR,
    "Campaign name; default: the project's only campaign, or the one called 'default'.",
)
FILTER = _query("filter", OpenApiTypes.STR, FILTER_HELP)
FILTER_VALUES = _query("filter_values", OpenApiTypes.STR, FILTER_VALUES_HELP)
EXCLUDE_INTERACTED = _query(
    "exclude_interacted",
    OpenApiTypes.BOOL,
    "Leave out items the user interacted with (their last 200 events). Default true.",
)

RECOMMENDATIONS_PARAMETERS = [
    _query("user_id", OpenApiTypes.STR, "The user's id; unknown users get cold start."),
    NUM_RESULTS,
    CAMPAIGN,
    FILTER,
    FILTER_VALUES,
    _query(
        "context",
        OpenApiTypes.STR,
        'JSON object, e.g. {"category": "Shoes"}: cold start prefers matching items.',
    ),
    EXCLUDE_INTERACTED,
]
RELATED_PARAMETERS = [
    NUM_RESULTS,
    CAMPAIGN,
    FILTER,
    FILTER_VALUES,
    _query(
        "user_id",
        OpenApiTypes.STR,
        "Optional: the viewer, for Interactions filters and to leave out their items.",
    ),
    EXCLUDE_INTERACTED,
]

ERRORS = {
    400: ErrorSerializer,
    401: ErrorSerializer,
    404: ErrorSerializer,
    409: ErrorSerializer,
    503: ErrorSerializer,
}


# --------------------------------------------------------------------------- feeds


class FeedItemSerializer(serializers.Serializer):
    item_id = serializers.CharField()
    score = serializers.FloatField(
        allow_null=True, help_text="The source's score; null for pinned items."
    )
    source = serializers.CharField(
        help_text="The feed source that supplied the item: campaign:<name>, popular, trending, "
        "followed, pinned, or promotion:<name>."
    )
    reason = serializers.CharField(
        help_text="Why, in words: 'because you viewed …', 'trending now', 'popular', "
        "'pinned at position 1', …"
    )
    rank = serializers.IntegerField(help_text="1-based position in the whole feed (all pages).")


class FeedWarningSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="source-unavailable, source-dry, source-changed, pin-skipped, pin-moved, "
        "feed-end, …"
    )
    source = serializers.CharField(allow_null=True)
    message = serializers.CharField()


class FeedResponseSerializer(serializers.Serializer):
    recommendation_id = serializers.CharField(
        help_text="Send it back with the events this page leads to (attribution)."
    )
    feed = serializers.CharField(help_text="The feed served (an experiment may pick a variant).")
    variant = serializers.CharField(
        required=False, help_text="The experiment variant, when an experiment assigned one."
    )
    items = FeedItemSerializer(many=True)
    next_cursor = serializers.CharField(
        allow_null=True, help_text="Pass it as cursor= for the next page; null at the end."
    )
    warnings = FeedWarningSerializer(many=True)


FEED_PARAMETERS = [
    OpenApiParameter("name", str, OpenApiParameter.PATH, description="The feed's name."),
    _query("user_id", OpenApiTypes.STR, "The reader's id; unknown users get cold start."),
    _query(
        "cursor",
        OpenApiTypes.STR,
        "next_cursor of the previous page; leave out for page 1. Cursors are signed and bound "
        "to the feed and the user: an altered or foreign one is refused with 400.",
    ),
    _query("page_size", OpenApiTypes.INT, "Items per page, 1 to 100 (default 20)."),
]
