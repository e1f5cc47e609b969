"""HTTPS settings of the portal, from the environment.

A pure function, so that the rule (on for a real domain, off for localhost,
each value overridable) is tested without reloading Django's settings."""

from collections.abc import Mapping

ONE_YEAR = 365 * 24 * 3600
TRUE = {"1", "true", "yes", "on"}


def is_real_domain(base_domain: str) -> bool:
    """localhost and *.localhost are a laptop's; every other name is served
    to the world and must be reached over HTTPS."""
    name = base_domain.strip().lower().rstrip(".")
    return not (name == "localhost" or name.endswith(".localhost"))


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = environ.get(name, "").strip().lower()
    return default if value == "" else value in TRUE


def transport_security(environ: Mapping[str, str]) -> dict:
    """Django's settings for cookies, HSTS and the TLS proxy in front of the portal.

    HTTPS (default: on when BASE_DOMAIN is a real domain) says the portal is
    reached over https, through a proxy that ends TLS and sets
    X-Forwarded-Proto. Then session and CSRF cookies are sent over HTTPS only,
    browsers are told to use HTTPS for SECURE_HSTS_SECONDS, and the proxy's
    header tells Django a request came over HTTPS."""
    https = _flag(environ, "HTTPS", is_real_domain(environ.get("BASE_DOMAIN", "") or "localhost"))
    hsts_seconds = environ.get("SECURE_HSTS_SECONDS", "").strip()
    if hsts_seconds and not hsts_seconds.isdigit():
        raise ValueError(f"SECURE_HSTS_SECONDS must be a whole number of seconds, not {hsts_seconds!r}")
    header = environ.get("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto" if https else "").strip()
    return {
        "HTTPS": https,
        "SESSION_COOKIE_SECURE": _flag(environ, "SESSION_COOKIE_SECURE", https),
        "CSRF_COOKIE_SECURE": _flag(environ, "CSRF_COOKIE_SECURE", https),
        "SECURE_HSTS_SECONDS": int(hsts_seconds) if hsts_seconds else (ONE_YEAR if https else 0),
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": _flag(environ, "SECURE_HSTS_INCLUDE_SUBDOMAINS", False),
        # Django reads the header from request.META: X-Forwarded-Proto is HTTP_X_FORWARDED_PROTO.
        "SECURE_PROXY_SSL_HEADER": ("HTTP_" + header.upper().replace("-", "_"), "https") if header else None,
    }
