"""Admin sign-in lockout (django-axes): five failures from one address for one account lock
that pair out for a while. The API's sign-in has its own throttles (voxanne/auth.py)."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler

from voxanne.models import User


class AdminLockoutBackend(AxesStandaloneBackend):
    """Refuses a locked-out pair before any password is checked.

    Authentication without a request (the shell, the test client's login) has no client
    address to lock out, so it goes on to the model backend unchecked.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class AdminLockoutHandler(AxesDatabaseHandler):
    """Counts failures of the admin's sign-in only: API sign-in failures write nothing here."""

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        if request is None or not self.is_admin_request(request):
            return None
        return super().user_login_failed(sender, credentials, request, **kwargs)


def lockout_username(request, credentials: dict | None) -> str:
    """The account an attempt was for, as stored (lowercased): case cannot dodge the count."""
    username = (credentials or {}).get("username") or request.POST.get("username") or ""
    return User.objects.normalize_email(str(username)).lower()
