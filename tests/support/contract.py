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


# An integer column's range is the database's: PostgreSQL's integer is 32 bits,
# SQLite's 64, and drf-spectacular writes it into the schema.
_DATABASE_INTEGER_MAXIMUMS = {2147483647, 9223372036854775807}


def without_database_ranges(node):
    """The schema with the bounds that come from the database engine left out,
    so that one record holds on SQLite and PostgreSQL alike."""
    if isinstance(node, dict):
        if node.get("type") == "integer" and node.get("maximum") in _DATABASE_INTEGER_MAXIMUMS:
            dropped = {"maximum", "format"} if node.get("format") == "int64" else {"maximum"}
            node = {key: value for key, value in node.items() if key not in dropped}
        return {key: without_database_ranges(value) for key, value in node.items()}
    if isinstance(node, list):
        return [without_database_ranges(item) for item in node]
    return node
