"""The error contract: every /api/ error is {"error": "<plain sentence>"}, nothing leaks.

Service code raises ApiError subclasses with a safe message; views never build error JSON.
Details go to the log with the request id, which is also the X-Request-ID response header.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework import serializers

logger = logging.getLogger("voxanne.errors")

STATUS_MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    429: "Too many requests. Please try again later.",
    500: "Internal server error",
    503: "Service temporarily unavailable. Please try again.",
}


class ApiError(Exception):
    """An error whose message is safe to show a clinic."""

    status_code = 400
    default_message = "Bad request"
    code = "bad_request"

    def __init__(self, message: str | None = None, *, code: str | None = None):
        self.message = message or self.default_message
        if code:
            self.code = code
        super().__init__(self.message)


class NotFound(ApiError):
    status_code = 404
    default_message = "Not found"
    code = "not_found"


class Conflict(ApiError):
    status_code = 409
    default_message = "Conflict"
    code = "conflict"


class Unprocessable(ApiError):
    status_code = 422
    default_message = "Unprocessable request"
    code = "unprocessable"


class IdempotencyKeyReused(Unprocessable):
    """An idempotency key came back with a different request than the one it first answered."""

    default_message = "This Idempotency-Key was already used with a different request body."
    code = "idempotency_key_reused"


class InvalidCredentials(ApiError):
    status_code = 401
    default_message = "Invalid email or password."
    code = "invalid_credentials"


class ServiceUnavailable(ApiError):
    status_code = 503
    default_message = STATUS_MESSAGES[503]
    code = "unavailable"


class ErrorSerializer(serializers.Serializer):
    """Documents the error body in the OpenAPI schema."""

    error = serializers.CharField()
    code = serializers.CharField(required=False)


def error_responses(*status_codes: int) -> dict[int, type[ErrorSerializer]]:
    """OpenAPI `responses` entries for the given error statuses."""
    return {status: ErrorSerializer for status in status_codes}


def error_response(status: int, message: str | None = None, **extra: object) -> JsonResponse:
    body = {"error": message or STATUS_MESSAGES.get(status, "Error"), **extra}
    return JsonResponse(body, status=status)


# The `error` sentence of a validation failure, by the failing rule's code: plain words for a
# person, naming neither the API field nor the rule's detail (both stay in `fields`).
_SENTENCES = {
    "required": "Please provide the {label}.",
    "blank": "Please provide the {label}.",
    "invalid_choice": "Please choose a valid {label}.",
    "max_length": "The {label} is too long.",
    "max_string_length": "The {label} is too long.",
    "min_length": "The {label} is too short.",
    "max_value": "The {label} is out of range.",
    "min_value": "The {label} is out of range.",
}
_DEFAULT_SENTENCE = "Please enter a valid {label}."


def _first_error(detail: object) -> object:
    while isinstance(detail, dict | list) and detail:
        detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
    return detail


def _validation_message(detail: object) -> tuple[str, dict]:
    """A plain sentence from DRF validation detail, plus the per-field detail for front ends."""
    if isinstance(detail, dict):
        fields = {
            str(k): [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in detail.items()
        }
        field, messages = next(iter(fields.items()), ("", ["Invalid input."]))
        if field in ("non_field_errors", "detail"):
            return messages[0], {}
        code = getattr(_first_error(detail[field]), "code", None)
        label = field.replace("_", " ").strip().lower()
        return _SENTENCES.get(code, _DEFAULT_SENTENCE).format(label=label), {"fields": fields}
    if isinstance(detail, list) and detail:
        return str(detail[0]), {}
    return str(detail) or "Invalid input.", {}


def _unexpected(exc: BaseException, status: int = 500) -> JsonResponse:
    logger.error("unhandled error", exc_info=(type(exc), exc, exc.__traceback__))
    return error_response(status)


def response_for_exception(exc: BaseException) -> JsonResponse:
    """Maps any exception raised while serving /api/ to its safe JSON response."""
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.message, code=exc.code)
    if isinstance(exc, drf.ValidationError):
        message, extra = _validation_message(exc.detail)
        return error_response(400, message, **extra)
    if isinstance(exc, drf.NotAuthenticated):
        return error_response(401, "Unauthorized")
    if isinstance(exc, drf.AuthenticationFailed):
        return error_response(401, "Invalid token")
    if isinstance(exc, drf.ParseError):
        return error_response(400, "Malformed request body: expected valid JSON.")
    if isinstance(exc, drf.UnsupportedMediaType):
        return error_response(415, "Unsupported media type: send application/json.")
    if isinstance(exc, drf.Throttled):
        response = error_response(429)
        if exc.wait:
            response["Retry-After"] = str(int(exc.wait) + 1)
        return response
    if isinstance(exc, (Http404, drf.NotFound)):
        return error_response(404)
    if isinstance(exc, (drf.PermissionDenied, DjangoPermissionDenied)):
        return error_response(403)
    if isinstance(exc, drf.APIException):
        return error_response(exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        return error_response(413)
    if isinstance(exc, (OperationalError, InterfaceError)):
        return _unexpected(exc, 503)
    return _unexpected(exc)


def api_exception_handler(exc: Exception, context: dict) -> JsonResponse:
    """DRF's EXCEPTION_HANDLER: every error a DRF view raises becomes {"error": ...}."""
    from rest_framework.views import set_rollback  # not at import time: it loads DRF settings

    set_rollback()
    response = response_for_exception(exc)
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


class ApiErrorMiddleware:
    """Gives /api/ errors outside DRF (unknown URL, crashes, Django's own 4xx) the same body."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code >= 400
            and response.get("Content-Type", "").split(";")[0] != "application/json"
        ):
            replacement = error_response(response.status_code)
            for header in ("Allow", "Retry-After", "X-Request-ID"):
                if header in response:
                    replacement[header] = response[header]
            return replacement
        return response

    def process_exception(self, request, exception):
        if request.path.startswith("/api/"):
            return response_for_exception(exception)
        return None
