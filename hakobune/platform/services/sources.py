"""Where a deploy's source comes from, as the portal sees it: the SSRF policy
from the admin's settings, and git URLs checked and stripped of credentials
before anything is stored."""

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from hakobune.worker import netguard
from hakobune.worker.gitfetch import validate_ref
from hakobune.worker.source import SourceError

# Replaced in tests that need a name to resolve to a given address.
resolver = netguard.default_resolver


def source_policy() -> netguard.Policy:
    return netguard.Policy(
        schemes=frozenset({"https"}),
        http_hosts=frozenset(settings.SOURCE_HTTP_HOSTS),
        allowed_hosts=frozenset(settings.SOURCE_ALLOWED_HOSTS),
    )


@dataclass(frozen=True)
class CheckedGitSource:
    url: str  # without credentials
    ref: str
    token: str


def check_git_source(url: str, ref: str, token: str = "") -> CheckedGitSource:
    """Checks a git source a person typed in; raises ValueError with a message
    for them. Credentials pasted into the URL become the token."""
    try:
        guarded = netguard.check_url(url, source_policy(), resolver)
    except netguard.UnsafeURL as exc:
        raise ValueError(f"Hakobune will not fetch this address: {exc}") from None
    try:
        ref = validate_ref(ref or "main")
    except SourceError as exc:
        raise ValueError(str(exc)) from None
    parts = urlsplit(url.strip())
    pasted = parts.password or parts.username or ""
    return CheckedGitSource(url=guarded.url, ref=ref, token=token or pasted)
