"""Test-only routes: probes for the error contract and the RLS wall, plus the real API."""

from django.core.exceptions import PermissionDenied
from django.db import connection
from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView

from voice.models import Call
from voxanne.errors import ApiError, Conflict, Unprocessable
from voxanne.urls import urlpatterns as real_urlpatterns


class UnscopedCallCount(APIView):
    """Deliberately forgets wall 1: counts calls without for_org()."""

    def get(self, request):
        return Response(
            {"count": Call.objects.count(), "ids": [str(c.id) for c in Call.objects.all()]}
        )


class Explode(APIView):
    def get(self, request):
        raise RuntimeError(
            'relation "voxanne_call" column org_id /work/main/voxanne/x.py secret-token'
        )


class BadSql(APIView):
    def get(self, request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT no_such_column FROM voxanne_organization")
        return Response({})


class Forbidden(APIView):
    def get(self, request):
        raise PermissionDenied("internal reason")


class Raises(APIView):
    def get(self, request, kind):
        if kind == "conflict":
            raise Conflict("Another provisioning is in progress. Please retry shortly.")
        if kind == "payment":
            raise PaymentRequired()
        raise Unprocessable("That key was used with a different request.")


class PaymentRequired(ApiError):
    status_code = 402
    default_message = "Insufficient balance. Please top up your wallet."


def plain_django_crash(request):
    raise ValueError("plain django view crashed at /srv/app.py")


probes = [
    path("unscoped-calls", UnscopedCallCount.as_view()),
    path("explode", Explode.as_view()),
    path("bad-sql", BadSql.as_view()),
    path("forbidden", Forbidden.as_view()),
    path("raises/<str:kind>", Raises.as_view()),
    path("plain-crash", plain_django_crash),
]

urlpatterns = [path("api/test-probes/", include(probes)), *real_urlpatterns]
