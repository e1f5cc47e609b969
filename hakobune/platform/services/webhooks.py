"""Auto-deploy on push. A GitHub-style delivery is signed with HMAC-SHA256 of
the body under the service's webhook secret (X-Hub-Signature-256); a
GitLab-style one carries the secret as X-Gitlab-Token. A push to the branch
the service follows deploys that exact commit; anything else is answered and
recorded, and a bad signature is refused and recorded."""

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass

from .models import Service, SourceKind, WebhookDelivery
from .services import ServiceActionError, deploy_service

logger = logging.getLogger(__name__)
Outcome = WebhookDelivery.Outcome


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    message: str
    build_number: int | None = None


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def receive_push(service: Service, headers, body: bytes, remote_addr: str | None) -> WebhookAnswer:
    provider, event, authentic = _authenticate(service, headers, body)

    def record(outcome, detail, status, build=None):
        WebhookDelivery.objects.create(
            service=service, provider=provider, event=event[:64], outcome=outcome, detail=detail[:500],
            remote_addr=remote_addr, build=build,
        )
        if outcome == Outcome.REFUSED:
            logger.warning("webhook for %s refused from %s: %s", service, remote_addr, detail)
        return WebhookAnswer(status, detail, build.number if build else None)

    if not authentic:
        return record(Outcome.REFUSED, "The signature is missing or wrong; check the webhook secret.", 403)
    if event in ("ping", "Test Hook"):
        return record(Outcome.IGNORED, "Hello! The webhook works.", 200)
    if event not in ("push", "Push Hook"):
        return record(Outcome.IGNORED, f"Only push events deploy; this was {event or 'an unnamed event'}.", 202)
    if service.source_kind != SourceKind.GIT:
        return record(Outcome.IGNORED, "This service deploys uploaded archives, not a repository.", 400)
    try:
        payload = json.loads(body)
        ref = payload["ref"]
        commit = payload.get("checkout_sha") or payload.get("after") or ""
    except (ValueError, KeyError, TypeError):
        return record(Outcome.IGNORED, "The body is not a push event's JSON.", 400)
    followed = {f"refs/heads/{service.git_branch}", f"refs/tags/{service.git_ref}"}
    if ref not in followed:
        return record(Outcome.IGNORED, f"A push to {ref}; this service follows {service.git_ref}.", 202)
    if payload.get("deleted") or not commit or set(commit) == {"0"}:
        return record(Outcome.IGNORED, f"{ref} was deleted; nothing to deploy.", 202)
    try:
        build = deploy_service(service=service, created_by=None, git_ref=commit, trigger="webhook")
    except ServiceActionError as exc:
        return record(Outcome.IGNORED, str(exc), 400)
    return record(Outcome.DEPLOYED, f"Deploying {commit[:12]} of {ref} as deploy #{build.number}.", 202, build)


def _authenticate(service: Service, headers, body: bytes) -> tuple[str, str, bool]:
    if "X-GitHub-Event" in headers or "X-Hub-Signature-256" in headers:
        signature = headers.get("X-Hub-Signature-256", "")
        expected = github_signature(service.webhook_secret, body)
        return "github", headers.get("X-GitHub-Event", ""), hmac.compare_digest(signature, expected)
    if "X-Gitlab-Event" in headers or "X-Gitlab-Token" in headers:
        token = headers.get("X-Gitlab-Token", "")
        return "gitlab", headers.get("X-Gitlab-Event", ""), hmac.compare_digest(token, service.webhook_secret)
    return "", "", False
