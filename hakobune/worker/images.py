"""Housekeeping of the images Hakobune built for a service."""

import docker
from docker.errors import APIError, ImageNotFound


def service_repository(team: str, service: str) -> str:
    return f"hakobune/{team}/{service}"


def remove_images(client: docker.DockerClient, team: str, service: str, *, keep: set[str] = frozenset()) -> list[str]:
    """Removes the service's images except those in `keep`; returns the tags
    removed. An image a container still uses stays."""
    removed = []
    repository = service_repository(team, service)
    for image in client.images.list(name=repository):
        # An image built identically for another service carries its tags too.
        for tag in image.tags:
            if tag in keep or not tag.startswith(f"{repository}:"):
                continue
            try:
                client.images.remove(tag, noprune=False)
                removed.append(tag)
            except (APIError, ImageNotFound):
                pass
    return removed
