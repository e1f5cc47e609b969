"""What the outside world relies on: every URL path the portal and the API
answer (without the names views are reversed by, which are internal), and the
API's OpenAPI schema."""

from django.urls import URLPattern, URLResolver, get_resolver


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern)


def url_paths() -> list[str]:
    """The portal's own paths, sorted; Django's admin is left out (its paths
    are Django's, not Hakobune's)."""
    return sorted({"/" + path for path in _walk(get_resolver().url_patterns) if not path.startswith("admin/")})


def openapi_schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)
