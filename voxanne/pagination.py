"""Page/limit pagination shared by the API's list endpoints."""

from __future__ import annotations

import math

from django.db.models import QuerySet
from rest_framework import serializers

MAX_PAGE = 1_000_000  # far beyond any clinic's data; keeps OFFSET inside Postgres' bigint


class PageParams(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, max_value=MAX_PAGE, default=1)
    limit = serializers.IntegerField(min_value=1, max_value=100, default=50)


class PaginationSerializer(serializers.Serializer):
    page = serializers.IntegerField()
    limit = serializers.IntegerField()
    total = serializers.IntegerField()
    total_pages = serializers.IntegerField()


def paginate(queryset: QuerySet, query_params) -> tuple[list, dict[str, int]]:
    """One page of `queryset` and its pagination block; bad page/limit raise a 400."""
    params = PageParams(data={k: query_params[k] for k in ("page", "limit") if k in query_params})
    params.is_valid(raise_exception=True)
    page, limit = params.validated_data["page"], params.validated_data["limit"]
    total = queryset.count()
    items = list(queryset[(page - 1) * limit : page * limit])
    return items, {
        "page": page,
        "limit": limit,
        "total": total,
        "total_pages": math.ceil(total / limit) if total else 0,
    }
