from __future__ import annotations

from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken

from voxanne.auth import ORG_CLAIM, read_token, user_for_token


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


class ClinicTokenRefreshSerializer(TokenRefreshSerializer):
    """Refresh token → new access token (and a new refresh token when rotating), only while
    the token's user could still sign in: active, in the token's org. Anything else is 401."""

    def validate(self, attrs):
        refresh = read_token(RefreshToken, attrs["refresh"])
        user_for_token(refresh)
        data = {"access": str(refresh.access_token)}
        if api_settings.ROTATE_REFRESH_TOKENS:
            if api_settings.BLACKLIST_AFTER_ROTATION:
                refresh.blacklist()
            refresh.set_jti()
            refresh.set_exp()
            refresh.set_iat()
            refresh.outstand()
            data["refresh"] = str(refresh)
        return data
