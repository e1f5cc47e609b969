"""The build status machine and the claim that makes duplicate task
deliveries harmless."""

import pytest

from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.builds.state import TRANSITIONS, InvalidTransition, advance, claim, fail
from hakobune.platform.diagnoses import Diagnosis
from hakobune.platform.services.services import create_service

S = BuildStatus


@pytest.fixture
def build(team, owner):
    service = create_service(team=team, name="web", created_by=owner)
    return Build.objects.create(service=service, number=1, source_archive="sources/x.tar.gz")


def test_a_build_walks_the_pipeline_in_order(build):
    path = [S.QUEUED, S.FETCHING, S.DETECTING, S.BUILDING, S.DEPLOYING, S.LIVE]
    for current, following in zip(path, path[1:]):
        assert advance(build.id, current, following)
    build.refresh_from_db()
    assert build.status == S.LIVE
    assert build.started_at is not None and build.finished_at is not None


def test_skipping_a_step_is_refused(build):
    with pytest.raises(InvalidTransition):
        advance(build.id, S.QUEUED, S.LIVE)


def test_finished_builds_never_move_again():
    for finished in (S.LIVE, S.FAILED, S.CANCELLED):
        assert TRANSITIONS[finished] == set()


def test_only_one_of_two_racing_advances_wins(build):
    assert advance(build.id, S.QUEUED, S.FETCHING) is True
    assert advance(build.id, S.QUEUED, S.FETCHING) is False


def test_a_step_is_claimed_once(build):
    advance(build.id, S.QUEUED, S.FETCHING)
    advance(build.id, S.FETCHING, S.DETECTING)
    assert claim(build.id, S.DETECTING) is True
    assert claim(build.id, S.DETECTING) is False
    # A claim for a step the build is not at does nothing.
    assert claim(build.id, S.BUILDING) is False


def test_fail_records_the_diagnosis_and_the_step(build):
    advance(build.id, S.QUEUED, S.FETCHING)
    assert fail(build.id, Diagnosis("source.refused", {"detail": "The archive is empty."}))
    build.refresh_from_db()
    assert build.status == S.FAILED
    assert (build.failure_rule, build.failure_params) == ("source.refused", {"detail": "The archive is empty."})
    assert build.failure_reason == build.failure_text == "The archive is empty."
    assert build.failed_step == S.FETCHING
    assert build.finished_at is not None


def test_a_finished_build_cannot_fail_afterwards(build):
    for current, following in [(S.QUEUED, S.FETCHING), (S.FETCHING, S.DETECTING), (S.DETECTING, S.BUILDING),
                               (S.BUILDING, S.DEPLOYING), (S.DEPLOYING, S.LIVE)]:
        advance(build.id, current, following)
    assert fail(build.id, Diagnosis("pipeline.stalled")) is False
    build.refresh_from_db()
    assert build.status == S.LIVE and build.failure_reason == ""
