"""The API's JSON parser: a body size limit, and a 400 (never a 500) for any bad body.

Kept apart from api_errors: DRF imports parsers while it defines APIView, so this module
must not import rest_framework.views.
"""

import json

from rest_framework import exceptions
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils.json import strict_constant

MAX_BODY_BYTES = 10 * 1024 * 1024


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "request_too_large"


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser with a body size limit, and a 400 (not a 500) for any bad body."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})
        body = stream.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            raise RequestTooLarge(
                f"The request body is larger than {MAX_BODY_BYTES // 1024**2} MB; "
                "send fewer records per request."
            )
        try:
            return json.loads(body.decode(encoding), parse_constant=strict_constant)
        except (ValueError, RecursionError) as exc:
            # ValueError covers bad syntax, bad UTF-8 and NaN/Infinity; RecursionError
            # absurdly deep nesting.
            raise exceptions.ParseError(f"The request body is not valid JSON: {exc}.") from None
