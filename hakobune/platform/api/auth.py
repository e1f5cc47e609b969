"""Bearer tokens for the API: `Authorization: Bearer hkb_…`."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from hakobune.platform.accounts.tokens import user_for_token


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, token = header.partition(" ")
        if keyword.lower() != self.keyword.lower():
            return None
        token = token.strip()
        if not token or " " in token:
            raise exceptions.AuthenticationFailed("The Authorization header must be `Bearer <token>`, with one token.")
        user, record = user_for_token(token)
        if user is None:
            if record is not None and record.revoked_at:
                why = f" when {record.revoked_reason}" if record.revoked_reason else ""
                raise exceptions.AuthenticationFailed(
                    f"This token was revoked{why}. Create a new one in the portal (API tokens) "
                    "or run `hakobune login` again."
                )
            if record is not None:
                raise exceptions.AuthenticationFailed(
                    "This token has expired. Create a new one in the portal (API tokens) or run `hakobune login` again."
                )
            raise exceptions.AuthenticationFailed(
                "This token is not valid. Check it was copied whole, or run `hakobune login` again."
            )
        # What the person does with it is recorded as theirs, with this token (observability/events.py).
        user.via_api_token = record
        return user, record

    def authenticate_header(self, request):
        return 'Bearer realm="hakobune"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "hakobune.platform.api.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API token (hkb_…)."}
