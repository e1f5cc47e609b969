"""Proof that a team holds a custom domain before Hakobune routes it: a TXT
record `_hakobune.<domain>` whose value is the domain's token. The look-up
goes to the name servers of DOMAIN_VERIFY_NAMESERVERS (the host's when
empty), on DOMAIN_VERIFY_DNS_PORT, so that tests answer from a stub on
loopback."""

from __future__ import annotations

import dns.exception
import dns.resolver
from django.conf import settings


class LookupFailed(Exception):
    """The TXT record could not be read; the message says why, in words."""


def txt_values(name: str, *, timeout: float = 5.0) -> list[str]:
    """The strings of the TXT records at `name` (none: an empty list)."""
    resolver = dns.resolver.Resolver(configure=not settings.DOMAIN_VERIFY_NAMESERVERS)
    if settings.DOMAIN_VERIFY_NAMESERVERS:
        resolver.nameservers = list(settings.DOMAIN_VERIFY_NAMESERVERS)
    resolver.port = settings.DOMAIN_VERIFY_DNS_PORT
    resolver.lifetime = timeout
    try:
        answer = resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.Timeout:
        raise LookupFailed(f"no name server answered for {name} within {timeout:g} s; try again in a minute")
    except dns.exception.DNSException as exc:
        raise LookupFailed(f"looking up {name} failed ({exc.__class__.__name__}); try again in a minute")
    return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]
