"""Git sources against a real git server on loopback (git's http-backend),
which the tests' admin setting allows: branches, tags, commits, subfolders,
a private repository with a token, and a push webhook that deploys."""

import json
import os

import pytest
from django.urls import reverse

from hakobune.platform.accounts.services import create_team
from hakobune.platform.services.models import Service, WebhookDelivery
from hakobune.platform.services.sources import source_policy
from hakobune.platform.services.webhooks import github_signature
from hakobune.worker.gitfetch import GitSource, fetch_git
from hakobune.worker.source import SourceError, select_subdir
from tests.conftest import APPS_DIR
from tests.support.gitserver import GitServer, Repository

from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = pytest.mark.integration

FLASK_APP = (APPS_DIR / "flask-hello" / "app.py").read_text()
REQUIREMENTS = (APPS_DIR / "flask-hello" / "requirements.txt").read_text()


@pytest.fixture(scope="module")
def git_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("git-server")
    server = GitServer(root, port=int(os.environ.get("TEST_GIT_PORT", "18418"))).start()
    yield server
    server.stop()


@pytest.fixture
def repo(git_server, tmp_path, request):
    name = request.node.name.replace("[", "-").replace("]", "")[:40]
    repository = Repository(git_server, name, tmp_path / "work")
    repository.commit({"app.py": FLASK_APP, "requirements.txt": REQUIREMENTS}, "first")
    repository.push()
    return repository


def fetch(url, ref, dest, token="", log=None):
    return fetch_git(GitSource(url=url, ref=ref, token=token), dest, policy=source_policy(),
                     log=(log.append if log is not None else lambda line: None))


def test_a_branch_is_fetched_shallow_without_its_history(repo, tmp_path):
    first = repo.commit({"NOTES.md": "second"}, "second")
    repo.push()
    fetched = fetch(repo.url, "main", tmp_path / "src")
    assert fetched.commit == first
    assert (fetched.root / "NOTES.md").read_text() == "second"
    assert not (fetched.root / ".git").exists()


def test_a_tag_and_a_full_commit_are_fetched(repo, tmp_path):
    tagged = repo.commit({"VERSION": "1"}, "v1")
    repo.tag("v1.0")
    repo.commit({"VERSION": "2"}, "v2")
    repo.push()
    assert fetch(repo.url, "v1.0", tmp_path / "tag").commit == tagged
    assert (tmp_path / "tag" / "VERSION").read_text() == "1"
    assert fetch(repo.url, tagged, tmp_path / "sha").commit == tagged


def test_a_subfolder_of_a_monorepo_is_chosen(repo, tmp_path):
    repo.commit({"services/api/app.py": FLASK_APP, "services/api/requirements.txt": REQUIREMENTS, "web/README": "x"})
    repo.push()
    fetched = fetch(repo.url, "main", tmp_path / "src")
    assert (select_subdir(fetched.root, "services/api") / "app.py").is_file()
    with pytest.raises(SourceError, match="has no folder services/missing. At its top it has: services, web"):
        select_subdir(fetched.root, "services/missing")


def test_a_missing_ref_says_so(repo, tmp_path):
    with pytest.raises(SourceError, match="no branch, tag or commit called nope"):
        fetch(repo.url, "nope", tmp_path / "src")


def test_a_private_repository_needs_its_token_and_the_token_is_never_logged(git_server, tmp_path):
    private = Repository(git_server, "private-app", tmp_path / "work")
    private.commit({"app.py": FLASK_APP, "requirements.txt": REQUIREMENTS})
    private.push()
    with pytest.raises(SourceError, match="refused access. If it is private, give Hakobune a token"):
        fetch(private.url, "main", tmp_path / "no-token")
    lines = []
    fetched = fetch(private.url, "main", tmp_path / "with-token", token=git_server.token, log=lines)
    assert (fetched.root / "app.py").is_file()
    assert lines and not any(git_server.token in line for line in lines)
    assert any(request["authorization"] for request in git_server.requests)


@pytest.fixture
def team(owner, team_name):
    return create_team(name=team_name, owner=owner)


@pytest.mark.django_db(transaction=True)
def test_a_service_from_a_private_repository_deploys_and_keeps_its_token_secret(git_server, login, owner, team, worker, tmp_path):
    private = Repository(git_server, "private-deploy", tmp_path / "work")
    private.commit({"app/app.py": FLASK_APP, "app/requirements.txt": REQUIREMENTS})
    private.push()
    client = login(owner)
    response = client.post(reverse("services:new", args=[team.name]), {
        "name": "private", "source_kind": "git", "git_url": private.url, "git_ref": "main",
        "git_token": git_server.token, "source_subdir": "app",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    service = Service.objects.get(team=team, name="private")
    build = wait_for_build(service.builds.get())
    assert build.status == "live", build.failure_reason
    assert get_through_router(service.hostname).text.startswith("Hello from Hakobune!")

    assert build.git_commit and build.source_archive.name.endswith(".tar.gz")
    log = "\n".join(build.log_lines.values_list("text", flat=True))
    page = client.get(reverse("services:detail", args=[team.name, "private"])).content.decode()
    for place in (log, page, service.git_url, service.git_token_encrypted, build.git_url):
        assert git_server.token not in place
    snapshot = client.get(reverse("builds:source", args=[team.name, "private", build.number]))
    assert snapshot.status_code == 200 and snapshot["Content-Disposition"].startswith("attachment")


@pytest.mark.django_db(transaction=True)
def test_a_signed_push_deploys_the_new_commit_and_a_bad_signature_is_refused(repo, login, owner, team, worker, client):
    owner_client = login(owner)
    response = owner_client.post(reverse("services:new", args=[team.name]), {
        "name": "pushy", "source_kind": "git", "git_url": repo.url, "git_ref": "main",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    service = Service.objects.get(team=team, name="pushy")
    assert wait_for_build(service.builds.get()).status == "live"

    commit = repo.commit({"app.py": FLASK_APP.replace("Hello from Hakobune", "Hello again")}, "greet again")
    repo.push()
    body = json.dumps({"ref": "refs/heads/main", "after": commit}).encode()
    hook = reverse("services:git_webhook", args=[service.webhook_id])

    forged = client.post(hook, body, content_type="application/json", headers={
        "X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature("not-the-secret", body)})
    assert forged.status_code == 403
    assert service.builds.count() == 1
    assert WebhookDelivery.objects.get(service=service).outcome == "refused"

    other_branch = json.dumps({"ref": "refs/heads/dev", "after": commit}).encode()
    ignored = client.post(hook, other_branch, content_type="application/json", headers={
        "X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(service.webhook_secret, other_branch)})
    assert ignored.status_code == 202 and "follows main" in ignored.json()["message"]

    accepted = client.post(hook, body, content_type="application/json", headers={
        "X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(service.webhook_secret, body)})
    assert accepted.status_code == 202, accepted.content
    build = wait_for_build(service.builds.get(number=accepted.json()["deploy"]))
    assert build.status == "live", build.failure_reason
    assert build.git_commit == commit and build.trigger == "webhook"
    assert get_through_router(service.hostname).text.startswith("Hello again!")


def _with_submodule(git_server, tmp_path, name, library, gitmodules_url=None):
    """A repository with `library` as a submodule at vendor/lib. With
    `gitmodules_url`, .gitmodules then names that address instead; it is only
    written down, never contacted, here."""
    from tests.support.gitserver import git

    parent = Repository(git_server, name, tmp_path / name)
    parent.commit({"app.py": FLASK_APP, "requirements.txt": REQUIREMENTS})
    git("-c", "protocol.file.allow=always", "submodule", "add", "--quiet", library.url, "vendor/lib", cwd=parent.work)
    if gitmodules_url:
        git("config", "--file", ".gitmodules", "submodule.vendor/lib.url", gitmodules_url, cwd=parent.work)
        git("add", ".gitmodules", cwd=parent.work)
    git("commit", "--quiet", "-m", "add submodule", cwd=parent.work)
    parent.push()
    return parent


def test_submodules_are_fetched_only_when_asked_and_their_addresses_are_checked(git_server, tmp_path):
    library = Repository(git_server, "library", tmp_path / "library")
    library.commit({"lib.py": "VALUE = 42\n"})
    library.push()
    parent = _with_submodule(git_server, tmp_path, "with-sub", library)
    policy = source_policy()

    plain = fetch_git(GitSource(url=parent.url, ref="main"), tmp_path / "plain", policy=policy, log=lambda line: None)
    assert not (plain.root / "vendor" / "lib" / "lib.py").exists()
    deep = fetch_git(GitSource(url=parent.url, ref="main", submodules=True), tmp_path / "deep", policy=policy,
                     log=lambda line: None)
    assert (deep.root / "vendor" / "lib" / "lib.py").read_text() == "VALUE = 42\n"

    sneaky = _with_submodule(git_server, tmp_path, "sneaky-sub", library, gitmodules_url="https://10.0.0.1/internal.git")
    with pytest.raises(SourceError, match="10.0.0.1 is a private network address"):
        fetch_git(GitSource(url=sneaky.url, ref="main", submodules=True), tmp_path / "sneaky", policy=policy,
                  log=lambda line: None)
