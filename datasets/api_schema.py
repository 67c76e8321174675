"""What the OpenAPI schema says about the write API and its authentication.

These serializers only describe the bodies for drf-spectacular; records are validated by
datasets.ingest.records (faster, and it reports every bad record by index). The limits come
from there, so the description cannot drift from the rules.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import serializers

from datasets.ingest.records import (
    MAX_EVENT_TYPE_LENGTH,
    MAX_IMPRESSION_ITEMS,
    MAX_RECOMMENDATION_ID_LENGTH,
    MAX_RECORDS_PER_REQUEST,
    TIMESTAMP_HELP,
)
from datasets.ingest.schema import MAX_ID_LENGTH


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "datasets.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A project's API key (rs_...), created on the project's API keys page.",
        }


def _id(**kwargs):
    return serializers.CharField(max_length=MAX_ID_LENGTH, **kwargs)


class EventSerializer(serializers.Serializer):
    user_id = _id()
    item_id = _id()
    event_type = serializers.CharField(max_length=MAX_EVENT_TYPE_LENGTH, required=False)
    timestamp = serializers.CharField(required=False, help_text=f"Default now; {TIMESTAMP_HELP}.")
    event_value = serializers.FloatField(min_value=0, required=False)
    session_id = _id(required=False)
    recommendation_id = serializers.CharField(
        max_length=MAX_RECOMMENDATION_ID_LENGTH, required=False
    )
    impression = serializers.ListField(
        child=_id(),
        max_length=MAX_IMPRESSION_ITEMS,
        required=False,
        help_text="Item ids shown; a pipe-separated string is accepted too.",
    )


class EventBatchSerializer(serializers.Serializer):
    events = EventSerializer(many=True, max_length=MAX_RECORDS_PER_REQUEST)


PROPERTIES_HELP = "Name -> string, number, boolean or list of strings. Replaces the stored set."


class UserSerializer(serializers.Serializer):
    user_id = _id()
    properties = serializers.DictField(required=False, help_text=PROPERTIES_HELP)


class UserBatchSerializer(serializers.Serializer):
    users = UserSerializer(many=True, max_length=MAX_RECORDS_PER_REQUEST)


class ItemSerializer(serializers.Serializer):
    item_id = _id()
    properties = serializers.DictField(required=False, help_text=PROPERTIES_HELP)
    creation_timestamp = serializers.CharField(required=False, help_text=TIMESTAMP_HELP)


class ItemBatchSerializer(serializers.Serializer):
    items = ItemSerializer(many=True, max_length=MAX_RECORDS_PER_REQUEST)


class RejectedRecordSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the record in the batch, from 0.")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class WriteResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Records stored.")
    rejected = RejectedRecordSerializer(many=True)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(required=False)
    rejected = RejectedRecordSerializer(many=True, required=False)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


WRITE_RESPONSES = {
    200: WriteResultSerializer,
    400: ErrorSerializer,
    401: ErrorSerializer,
    413: ErrorSerializer,
    415: ErrorSerializer,
}
