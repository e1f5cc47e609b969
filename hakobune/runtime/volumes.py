"""A team's named volumes on the local runtime: Docker "local" volumes,
labelled with the platform and the team, named
``<platform>.vol.<team>.<name>`` (team and volume names are DNS labels,
which hold no dot, so two teams' names never meet).

A fresh volume belongs to the apps' user (10001, mode 0700): a short-lived
helper container (the platform's own image, never a team's) does that once,
as root with CAP_CHOWN alone and no network. Docker's local volumes have no
size limit, so the platform measures them instead: one helper container per
team, with every volume of the team mounted read-only, runs ``du`` (as root
with CAP_DAC_READ_SEARCH alone, so no file of the app hides from it).

This module imports nothing of Django; it takes the local backend and plain values."""

from __future__ import annotations

from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import Mount

from .base import RuntimeBackendError, VolumeMount

LABEL_VOLUME = "org.hakobune.volume"
LABEL_VOLUME_TEAM = f"{LABEL_VOLUME}.team"
LABEL_VOLUME_NAME = f"{LABEL_VOLUME}.name"
# The apps' user (docker_local.SERVICE_USER).
APP_UID = 10001


def engine_name(instance: str, team: str, name: str) -> str:
    return f"{instance}.vol.{team}.{name}"


class LocalVolumes:
    """The named volumes of one local backend (hakobune/runtime/docker_local.py)."""

    def __init__(self, backend):
        self.backend = backend
        # Which Hakobune this is (the local backend's `instance` option).
        self.instance = getattr(backend, "instance", None) or backend.options.get("instance", "hakobune")

    @property
    def client(self):
        return self.backend.client

    def name_of(self, team: str, name: str) -> str:
        return engine_name(self.instance, team, name)

    def _labels(self, team: str, name: str) -> dict[str, str]:
        return {LABEL_VOLUME: self.instance, LABEL_VOLUME_TEAM: team, LABEL_VOLUME_NAME: name}

    def owned(self, team: str, volume: str):
        """The engine's volume `volume` if it is this platform's and `team`'s;
        RuntimeBackendError otherwise (missing, or another's: never mounted)."""
        try:
            found = self.client.volumes.get(volume)
        except NotFound:
            raise RuntimeBackendError(f"the volume {volume} does not exist on this host", permanent=True)
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed: {exc}", permanent=False)
        labels = found.attrs.get("Labels") or {}
        if labels.get(LABEL_VOLUME) != self.instance or labels.get(LABEL_VOLUME_TEAM) != team:
            raise RuntimeBackendError(f"the volume {volume} is not a volume of team {team}", permanent=True)
        return found

    def create(self, team: str, name: str, *, helper_image: str) -> str:
        """Makes the volume (if missing) and gives it to the apps' user; its engine name."""
        volume = self.name_of(team, name)
        try:
            self.client.volumes.get(volume)
        except NotFound:
            try:
                self.client.volumes.create(name=volume, driver="local", labels=self._labels(team, name))
            except DockerException as exc:
                raise RuntimeBackendError(f"the Docker Engine could not make the volume {volume}: {exc}",
                                          permanent=False)
        self.owned(team, volume)
        code, output = self._helper(
            helper_image, ["/bin/sh", "-c", f"chmod 0700 /v && chown {APP_UID}:{APP_UID} /v"],
            mounts=[Mount(target="/v", source=volume, type="volume", no_copy=True)], cap="CHOWN",
        )
        if code != 0:
            raise RuntimeBackendError(f"could not give the volume {volume} to the app's user: {output[-500:]}",
                                      permanent=False)
        return volume

    def measure(self, team: str, volumes: list[str], *, helper_image: str) -> dict[str, int]:
        """The bytes each of the team's volumes holds on disk ({engine name: bytes}),
        in one helper container."""
        owned = []
        for volume in volumes:
            try:
                self.owned(team, volume)
            except RuntimeBackendError:
                continue
            owned.append(volume)
        if not owned:
            return {}
        mounts = [Mount(target=f"/v/{index}", source=volume, type="volume", read_only=True, no_copy=True)
                  for index, volume in enumerate(owned)]
        code, output = self._helper(
            helper_image, ["du", "-s", "-B1", "-x", *(f"/v/{index}" for index in range(len(owned)))],
            mounts=mounts, cap="DAC_READ_SEARCH",
        )
        sizes = {}
        for line in output.splitlines():
            size, _, path = line.partition("\t")
            if size.isdigit() and path.startswith("/v/") and path[3:].isdigit() and int(path[3:]) < len(owned):
                sizes[owned[int(path[3:])]] = int(size)
        if code != 0 and not sizes:
            raise RuntimeBackendError(f"could not measure the volumes of team {team}: {output[-500:]}",
                                      permanent=False)
        return sizes

    def _helper(self, image: str, command: list[str], *, mounts: list, cap: str) -> tuple[int, str]:
        """Runs the platform's helper image as root with one capability, no
        network and a read-only root; its exit status and output."""
        try:
            self.client.images.get(image)
        except ImageNotFound:
            raise RuntimeBackendError(f"the image {image} is not on this host", permanent=False)
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed: {exc}", permanent=False)
        container = None
        try:
            container = self.client.containers.run(
                image, command, detach=True, user="0:0", cap_drop=["ALL"], cap_add=[cap],
                security_opt=["no-new-privileges"], read_only=True, network_mode="none", mounts=mounts,
                mem_limit="64m", pids_limit=32, labels={LABEL_VOLUME: self.instance},
            )
            status = container.wait(timeout=300)
            output = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
            return int(status.get("StatusCode", 1)), output
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed: {exc}", permanent=False)
        finally:
            if container is not None:
                try:
                    container.remove(force=True)
                except DockerException:
                    pass

    def remove(self, team: str, volume: str) -> list[str]:
        """Deletes the volume and its data (the caller had its name typed)."""
        try:
            found = self.owned(team, volume)
        except RuntimeBackendError as exc:
            if "does not exist" in exc.message:
                return []
            raise
        done = []
        try:
            # Instances of a release that no longer mounts it may still be
            # retiring: running ones are waited for (the caller tries again),
            # stopped ones of this platform go, and the volume with them.
            users = self.client.containers.list(all=True, filters={"volume": volume})
            running = [c.name for c in users if c.status in ("running", "restarting", "paused")]
            if running:
                raise RuntimeBackendError(f"the volume {volume} is still in use by {', '.join(running)}",
                                          permanent=False)
            for container in users:
                if (container.labels or {}).get("org.hakobune.managed") == self.instance:
                    container.remove(force=True)
                    done.append(f"removed the stopped container {container.name}, which held {volume}")
            found.remove()
        except APIError as exc:
            raise RuntimeBackendError(f"the volume {volume} could not be removed: {exc.explanation or exc}",
                                      permanent=False)
        return [*done, f"removed the volume {volume}"]

    def remove_all_of_team(self, team: str) -> list[str]:
        done = []
        try:
            listed = self.client.volumes.list(
                filters={"label": [f"{LABEL_VOLUME}={self.instance}", f"{LABEL_VOLUME_TEAM}={team}"]})
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed: {exc}", permanent=False)
        for found in listed:
            try:
                found.remove()
                done.append(f"removed the volume {found.name}")
            except APIError as exc:
                done.append(f"could not remove the volume {found.name}: {exc.explanation or exc}")
        return done


def mounts_of(volumes: tuple[VolumeMount, ...]) -> list[Mount]:
    """The engine's mounts of a release's volumes. No copy of the image's
    files into an empty volume: the copy would also take the owner of the
    image's directory (root), and the app's user could no longer write."""
    return [Mount(target=mount.path, source=mount.volume, type="volume", no_copy=True) for mount in volumes]
