"""The real URLconf plus GET /api/bench/floor: the same JWT authentication and tenant
middleware as every API read, then one primary-key SELECT. Nothing an endpoint could do for
less."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from voxanne.models import Organization
from voxanne.urls import urlpatterns as real_urlpatterns


class Floor(APIView):
    def get(self, request):
        name = Organization.objects.values_list("clinic_name", flat=True).get(pk=request.org.pk)
        return Response({"clinic_name": name})


urlpatterns = [path("api/bench/floor", Floor.as_view()), *real_urlpatterns]
