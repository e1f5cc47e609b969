"""Who may look under a service's hood, and the reading itself, for the
service page's panel and `GET …/under-the-hood/` alike. The reading is the
runtime backend's (`under_the_hood`, capability "under_the_hood"); of other
services it holds counts only (docs/security.md, "Under the hood")."""

from django.http import Http404

from hakobune.platform.services.access import service_for
from hakobune.platform.services.backends import backend_for
from hakobune.platform.services.declared_settings import values_of
from hakobune.platform.services.models import DesiredState, Service
from hakobune.runtime.base import ServiceRef
from hakobune.runtime.hood import ContainerView, HoodUnavailable, SandboxView
from hakobune.runtime.release_config import RELEASE, ReleaseConfig

CAPABILITY = "under_the_hood"


def service_for_hood(user, team_name: str, service_name: str) -> Service:
    """The service whose hood the person may look under: their team's (any
    role) or, for the platform's administrators, any team's. Anyone else
    gets the 404 of a service that does not exist."""
    if user.is_staff:
        found = (Service.objects.select_related("team", "live_release")
                 .exclude(desired_state=DesiredState.DELETED).filter(team__name=team_name, name=service_name).first())
        if found is None:
            raise Http404("No such service")
        return found
    return service_for(user, team_name, service_name)[1]


def has_hood(service: Service) -> bool:
    return CAPABILITY in backend_for(service).capabilities


def read_hood(service: Service) -> ContainerView | SandboxView:
    """The backend's reading of the service's live release. Raises
    HoodUnavailable("not_deployed") before its first deploy goes live,
    other HoodUnavailable reasons and RuntimeBackendError from the backend."""
    release = service.live_release
    if release is None:
        raise HoodUnavailable("not_deployed", f"{service.name} has not been deployed yet; deploy it first.")
    config = ReleaseConfig.from_dict(release.config, defaults=values_of(service, stage=RELEASE))
    return backend_for(service).under_the_hood(ServiceRef(service.team.name, service.name), config=config,
                                               state=dict(release.runtime_state or {}))
