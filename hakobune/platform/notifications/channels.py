"""Where a notification goes, and how it gets there: e-mail through Django's
mail backend; Slack, Discord, Microsoft Teams and JSON webhooks through
apprise. Every URL passes the SSRF guard (hakobune/worker/netguard.py) when
the target is saved and again before each sending, and apprise's requests are
held to the addresses the guard checked (`netguard.connecting_only_to`), so
a notification never reaches a private, loopback or link-local address, nor
one a redirect or a changed DNS answer points to."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import apprise
from apprise.plugins.custom_json import NotifyJSON
from apprise.plugins.discord import NotifyDiscord
from apprise.plugins.slack import NotifySlack
from apprise.plugins.workflows import NotifyWorkflows
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.utils.translation import gettext as _

from hakobune.worker import netguard

from .models import TargetKind

# Replaced in tests that need a name to resolve to a given address.
resolver = netguard.default_resolver

# The shape of each chat service's webhook URL, as apprise reads it.
NATIVE = {
    TargetKind.SLACK: (NotifySlack, "https://hooks.slack.com/services/T…/B…/…"),
    TargetKind.DISCORD: (NotifyDiscord, "https://discord.com/api/webhooks/…/…"),
    TargetKind.TEAMS: (NotifyWorkflows, "https://….logic.azure.com:443/workflows/…/triggers/manual/paths/invoke?…"),
}


class Refused(Exception):
    """The address may not be sent to (the guard's words); trying again will not help."""


class NotSent(Exception):
    """It was tried and did not go; the message says what the other side (or the network) said."""


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    # The webhook's JSON fields besides title and message: event, team,
    # service, link and the event's own (strings).
    fields: dict[str, str] = field(default_factory=dict)
    # A failure (red in chat services) rather than a warning.
    failure: bool = True


@dataclass(frozen=True)
class CheckedAddress:
    address: str  # as stored (a chat URL in the form its service posts to)
    shown: str  # what the page shows of it


def policy() -> netguard.Policy:
    return netguard.Policy(
        schemes=frozenset({"https"}),
        http_hosts=frozenset(settings.NOTIFY_HTTP_HOSTS),
        allowed_hosts=frozenset(settings.NOTIFY_ALLOWED_HOSTS),
        does_not="does not send notifications to",
        only="sends notifications only to",
        example="https://hooks.example.com/hakobune",
    )


def check_address(kind: str, address: str) -> CheckedAddress:
    """Checks an address a person typed in for a target of `kind`; raises
    ValidationError with a sentence for them. A URL is checked by the SSRF
    guard before anything else is done with it: no connection is made."""
    address = (address or "").strip()
    if kind == TargetKind.EMAIL:
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(_("%(address)s is not an e-mail address.") % {"address": address}) from None
        user, _at, domain = address.rpartition("@")
        return CheckedAddress(address, f"{user[:1]}…@{domain}")
    if kind == TargetKind.DISCORD:
        # The old host name: apprise posts to discord.com, the host the guard checks.
        address = address.replace("://discordapp.com/", "://discord.com/", 1)
    if kind in NATIVE:
        plugin, example = NATIVE[kind]
        if not plugin.parse_native_url(address):
            raise ValidationError(
                _("That is not a %(kind)s webhook address. It looks like %(example)s.")
                % {"kind": TargetKind(kind).label, "example": example}
            )
    guarded = guard(address)
    port = f":{urlsplit(guarded.url).port}" if urlsplit(guarded.url).port else ""
    return CheckedAddress(address, f"{guarded.scheme}://{guarded.host}{port}/…")


def guard(address: str) -> netguard.GuardedURL:
    try:
        return netguard.check_url(address, policy(), resolver)
    except netguard.UnsafeURL as exc:
        raise ValidationError(_("Hakobune will not send notifications to this address: %(why)s") % {"why": exc}) from None


def send(kind: str, address: str, message: Message) -> None:
    """Sends one message; raises Refused (the address is not allowed now) or
    NotSent (it did not go: the reason in the message)."""
    if kind == TargetKind.EMAIL:
        _send_email(address, message)
        return
    try:
        guarded = netguard.check_url(address, policy(), resolver)
    except netguard.UnsafeURL as exc:
        raise Refused(f"Hakobune will not send notifications to this address: {exc}") from None
    asset = apprise.AppriseAsset(async_mode=False, http_redirects=False, storage_mode="memory")
    sender = apprise.Apprise(asset=asset)
    if not sender.add(notifier(kind, address, guarded, message, asset)):
        raise Refused("apprise could not read this address")
    with netguard.connecting_only_to(guarded):
        result = sender.notify(
            body=message.body, title=message.title,
            notify_type=apprise.NotifyType.FAILURE if message.failure else apprise.NotifyType.WARNING,
        )
    if not result:
        said = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR")]
        raise NotSent(_without(" ".join(said) or "the service did not accept it", address))


def notifier(kind: str, address: str, guarded: netguard.GuardedURL, message: Message, asset):
    timeouts = {"cto": settings.NOTIFY_TIMEOUT_SECONDS, "rto": settings.NOTIFY_TIMEOUT_SECONDS, "redirect": False}
    if kind == TargetKind.WEBHOOK:
        parts = urlsplit(guarded.url)
        return NotifyJSON(
            host=f"[{guarded.host}]" if ":" in guarded.host else guarded.host, port=parts.port, secure=guarded.scheme == "https", fullpath=parts.path or "/",
            params=dict(parse_qsl(parts.query)), user=guarded.username or None, password=guarded.password or None,
            payload=message.fields, asset=asset, **timeouts,
        )
    found = NATIVE[kind][0].parse_native_url(address)
    found.update(timeouts)
    return NATIVE[kind][0](asset=asset, **{key: value for key, value in found.items() if key != "asset"})


def _send_email(address: str, message: Message) -> None:
    lines = [message.body, ""] + [f"{name}: {value}" for name, value in message.fields.items()]
    email = EmailMessage(subject=message.title, body="\n".join(lines), to=[address])
    try:
        email.send()
    except (OSError, ValueError) as exc:  # smtplib's errors are OSErrors
        raise NotSent(f"the mail server did not take it: {exc}") from None


def _without(text: str, address: str) -> str:
    """The reason, never carrying the secret URL itself."""
    parts = urlsplit(address)
    for secret in (address, urlunsplit(parts._replace(query="", fragment="")), parts.path):
        if secret and secret != "/" and len(secret) > 1:
            text = text.replace(secret, "…")
    return text
