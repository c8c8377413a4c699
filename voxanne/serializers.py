from __future__ import annotations

from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer

from voxanne.auth import ORG_CLAIM


class SignupSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False, write_only=True)
    clinic_name = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, allow_null=True
    )


class SignupResponseSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()
    org_id = serializers.UUIDField()
    user_id = serializers.UUIDField()


class ClinicTokenSerializer(TokenObtainPairSerializer):
    """Email + password → token pair with the org claim; support staff get no API token."""

    default_error_messages = {"no_active_account": "Invalid email or password."}

    def validate(self, attrs):
        data = super().validate(attrs)
        if self.user.organization_id is None:
            raise AuthenticationFailed()
        return data

    @classmethod
    def get_token(cls, user):
        token = super().get_token(user)
        token[ORG_CLAIM] = str(user.organization_id)
        return token
