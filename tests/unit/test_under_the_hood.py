"""What "under the hood" reads and shows: the kernel's words decoded (capability
masks, namespace links, cgroup files of both versions), an image's history
turned into layers of stack, dependencies and code; and the panel, which the
service's team (and the platform's staff) see, in English and Japanese, while
an outsider finds nothing."""

import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import translation

from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.services.models import Release
from hakobune.platform.services.services import create_service
from hakobune.runtime.base import ServiceRef
from hakobune.runtime.cgroups import CgroupReader
from hakobune.runtime.hood import (
    CAPABILITY_NAMES,
    CODE,
    DEPENDENCIES,
    STACK,
    HoodUnavailable,
    ProcReader,
    all_capabilities,
    decode_capabilities,
    image_layers,
    layer_steps,
    limit_value,
    namespace_id,
    parse_cpu_max,
    parse_status,
    part_of_layers,
    read_cgroup_limits,
    step_words,
)
from hakobune.runtime.release_config import ReleaseConfig

CONTAINER_ID = "f6686d0c66bb98e7683059c88936da8485071465033aabbbbe181fbec375ea35"


# -- capabilities -------------------------------------------------------------------------------


def test_an_empty_mask_decodes_to_no_capability():
    assert decode_capabilities("0000000000000000") == ()


def test_root_on_a_host_holds_every_capability_the_kernel_knows():
    names = decode_capabilities("000001ffffffffff")
    assert len(names) == 41 and names[0] == "chown" and names[-1] == "checkpoint_restore"
    assert names == all_capabilities(40) == CAPABILITY_NAMES


def test_single_bits_decode_to_their_names():
    assert decode_capabilities("0000000000000400") == ("net_bind_service",)
    assert decode_capabilities(1 << 21) == ("sys_admin",)
    # Docker's default set for a container that drops nothing.
    assert decode_capabilities("00000000a80425fb") == (
        "chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap", "net_bind_service",
        "net_raw", "sys_chroot", "mknod", "audit_write", "setfcap",
    )


def test_a_bit_beyond_the_known_ones_is_named_by_number():
    assert decode_capabilities(hex((1 << 45) | 1)[2:]) == ("chown", "cap_45")
    with pytest.raises(ValueError):
        decode_capabilities("not hex")


def test_a_status_file_gives_its_fields():
    status = parse_status("Name:\tgunicorn\nUid:\t10001\t10001\t10001\t10001\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n")
    assert status["Name"] == "gunicorn" and status["CapEff"] == "0000000000000000" and status["NoNewPrivs"] == "1"


# -- namespaces --------------------------------------------------------------------------------------


def test_a_namespace_link_gives_its_number():
    assert namespace_id("net:[4026532184]") == "4026532184"
    for bad in ("net:4026532184", "net:[abc]", "", "/proc/1/ns/net"):
        with pytest.raises(ValueError):
            namespace_id(bad)


def fake_proc(root: Path, pid: int, namespaces: dict[str, int], status: str) -> None:
    (root / str(pid) / "ns").mkdir(parents=True)
    for kind, number in namespaces.items():
        os.symlink(f"{kind}:[{number}]", root / str(pid) / "ns" / kind)
    (root / str(pid) / "status").write_text(status)


HOST_NS = {"pid": 4026531836, "net": 4026531833, "mnt": 4026531832, "uts": 4026531838, "ipc": 4026531839,
           "cgroup": 4026531835, "user": 4026531837}


def test_a_process_namespaces_are_compared_with_the_hosts(tmp_path):
    fake_proc(tmp_path, 1, HOST_NS, "CapEff:\t000001ffffffffff\n")
    own = {**HOST_NS, "pid": 4026532183, "net": 4026532184, "mnt": 4026532180, "uts": 4026532181, "ipc": 4026532182}
    fake_proc(tmp_path, 4242, own, "Uid:\t10001\t10001\t10001\t10001\nCapEff:\t0000000000000000\n"
                                    "CapBnd:\t0000000000000000\nNoNewPrivs:\t1\n")
    reader = ProcReader(str(tmp_path))
    pairs = {pair.kind: pair for pair in reader.namespaces(4242)}
    assert list(pairs) == ["pid", "net", "mnt", "uts", "ipc", "cgroup", "user"]
    for kind in ("pid", "net", "mnt", "uts", "ipc"):
        assert not pairs[kind].shared and pairs[kind].container == str(own[kind]) and pairs[kind].host == str(HOST_NS[kind])
    assert pairs["user"].shared and pairs["cgroup"].shared

    capabilities = reader.capabilities(4242)
    assert capabilities.effective == () and capabilities.bounding == ()
    assert capabilities.no_new_privileges and capabilities.uid == "10001"
    assert len(capabilities.host_root) == 41


def test_a_process_that_is_gone_cannot_be_read(tmp_path):
    from hakobune.runtime.hood import HoodUnreadable

    fake_proc(tmp_path, 1, HOST_NS, "CapEff:\t000001ffffffffff\n")
    with pytest.raises(HoodUnreadable, match="process 777"):
        ProcReader(str(tmp_path)).namespaces(777)
    with pytest.raises(HoodUnreadable, match="process 777"):
        ProcReader(str(tmp_path)).capabilities(777)


def test_where_init_is_not_readable_the_hosts_namespace_is_the_readers_own(tmp_path, monkeypatch):
    fake_proc(tmp_path, 4242, {"net": 4026532184}, "")
    (tmp_path / "self" / "ns").mkdir(parents=True)
    os.symlink("net:[4026531833]", tmp_path / "self" / "ns" / "net")
    real = os.readlink

    def guarded(path, *args, **kwargs):
        if str(path).startswith(f"{tmp_path}/1/"):
            raise PermissionError(13, "Permission denied")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "readlink", guarded)
    assert ProcReader(str(tmp_path)).host_namespace("net") == "4026531833"


# -- cgroups ---------------------------------------------------------------------------------------------


def test_cgroup_limit_files_are_read_as_numbers_or_no_limit():
    assert parse_cpu_max("50000 100000\n") == (50000, 100000)
    assert parse_cpu_max("max 100000") == (None, 100000)
    assert limit_value("268435456\n") == 268435456 and limit_value("max") is None
    assert limit_value("9223372036854771712", unlimited_from=1 << 62) is None


def write_files(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


class Clock:
    """Readings 0.25 s apart, without waiting."""

    def __init__(self, monkeypatch, folder: Path, usage_name: str, second_usage: str):
        import time

        self.now = 1000.0
        monkeypatch.setattr(time, "monotonic", lambda: self.now)
        self.folder, self.usage_name, self.second_usage = folder, usage_name, second_usage

    def sleep(self, seconds):
        self.now += seconds
        (self.folder / self.usage_name).write_text(self.second_usage)


def test_a_cgroup_v2_instance_its_limits_and_use(tmp_path, monkeypatch):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    folder = tmp_path / "system.slice" / f"docker-{CONTAINER_ID}.scope"
    write_files(folder, {
        "memory.max": "268435456\n", "memory.current": "73400320\n", "memory.stat": "anon 60000000\ninactive_file 6291456\n",
        "cpu.max": "50000 100000\n", "cpu.stat": "usage_usec 1000000\nuser_usec 800000\n",
        "pids.max": "256\n", "pids.current": "5\n",
    })
    clock = Clock(monkeypatch, folder, "cpu.stat", "usage_usec 1050000\n")
    view = read_cgroup_limits(CgroupReader(tmp_path), CONTAINER_ID, sleep=clock.sleep)
    assert view.version == 2
    assert view.memory_limit_bytes == 256 * 1024 * 1024
    assert view.memory_bytes == 73400320 - 6291456 and view.memory_percent == 25.0
    assert view.cpu_limit_cores == 0.5
    # 50 ms of CPU in 250 ms: 20 % of a core, 40 % of its half core.
    assert view.cpu_percent == 20.0 and view.cpu_percent_of_limit == 40.0
    assert view.pids_limit == 256 and view.pids == 5
    assert view.files["memory_limit"] == "memory.max" and view.files["cpu_limit"] == "cpu.max"


def test_a_cgroup_v2_instance_without_limits(tmp_path, monkeypatch):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    folder = tmp_path / "docker" / CONTAINER_ID
    write_files(folder, {"memory.max": "max\n", "memory.current": "1000\n", "cpu.max": "max 100000\n",
                         "cpu.stat": "usage_usec 5\n", "pids.max": "max\n", "pids.current": "1\n"})
    view = read_cgroup_limits(CgroupReader(tmp_path), CONTAINER_ID, cpu_sample_seconds=0)
    assert view.memory_limit_bytes is None and view.memory_percent is None
    assert view.cpu_limit_cores is None and view.pids_limit is None and view.pids == 1


def test_a_cgroup_v1_instance_its_limits_and_use(tmp_path, monkeypatch):
    write_files(tmp_path / "memory" / "docker" / CONTAINER_ID, {
        "memory.limit_in_bytes": "134217728\n", "memory.usage_in_bytes": "10485760\n",
        "memory.stat": "total_inactive_file 2097152\n"})
    cpu = tmp_path / "cpu,cpuacct" / "docker" / CONTAINER_ID
    write_files(cpu, {"cpu.cfs_quota_us": "25000\n", "cpu.cfs_period_us": "100000\n", "cpuacct.usage": "1000000000\n"})
    write_files(tmp_path / "pids" / "docker" / CONTAINER_ID, {"pids.max": "64\n", "pids.current": "2\n"})
    clock = Clock(monkeypatch, cpu, "cpuacct.usage", "1025000000\n")
    view = read_cgroup_limits(CgroupReader(tmp_path), CONTAINER_ID, sleep=clock.sleep)
    assert view.version == 1
    assert view.memory_limit_bytes == 128 * 1024 * 1024 and view.memory_bytes == 8 * 1024 * 1024
    assert view.cpu_quota_us == 25000 and view.cpu_limit_cores == 0.25
    assert view.cpu_percent == 10.0 and view.cpu_percent_of_limit == 40.0
    assert view.pids_limit == 64 and view.pids == 2
    assert view.files["memory_limit"] == "memory.limit_in_bytes"


def test_a_cgroup_v1_instance_without_a_cpu_limit(tmp_path):
    write_files(tmp_path / "memory" / "docker" / CONTAINER_ID, {
        "memory.limit_in_bytes": "9223372036854771712\n", "memory.usage_in_bytes": "1\n", "memory.stat": ""})
    write_files(tmp_path / "cpu,cpuacct" / "docker" / CONTAINER_ID, {"cpu.cfs_quota_us": "-1\n",
                                                                       "cpu.cfs_period_us": "100000\n"})
    write_files(tmp_path / "pids" / "docker" / CONTAINER_ID, {"pids.max": "max\n", "pids.current": "1\n"})
    view = read_cgroup_limits(CgroupReader(tmp_path), CONTAINER_ID, cpu_sample_seconds=0)
    assert view.memory_limit_bytes is None and view.cpu_limit_cores is None and view.pids_limit is None


def test_an_instance_whose_cgroup_is_not_here_cannot_be_read(tmp_path):
    from hakobune.runtime.hood import HoodUnreadable

    (tmp_path / "cgroup.controllers").write_text("")
    with pytest.raises(HoodUnreadable, match="cgroup"):
        read_cgroup_limits(CgroupReader(tmp_path), CONTAINER_ID, cpu_sample_seconds=0)


# -- layers ---------------------------------------------------------------------------------------------------

# What the engine's history says of a Python service built by Hakobune (newest first).
CLASSIC_HISTORY = [
    {"CreatedBy": "/bin/sh -c #(nop) COPY dir:72e93f113cfadc626e11c059cdf882071a29f4e68ec2197c913402f3966a3a03 in . ",
     "Size": 5230},
    {"CreatedBy": "/bin/sh -c #(nop)  USER 10001:10001", "Size": 0},
    {"CreatedBy": '/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "exec gunicorn app:app"]', "Size": 0},
    {"CreatedBy": "/bin/sh -c #(nop)  EXPOSE 8080", "Size": 0},
    {"CreatedBy": "/bin/sh -c pip install --no-cache-dir -r requirements.txt", "Size": 12_400_000},
    {"CreatedBy": "/bin/sh -c #(nop) COPY file:61f4faee8d3546bc59f21fe6168a562bac0717406832d488e77bd582568a57fb in ./ ",
     "Size": 17},
    {"CreatedBy": "/bin/sh -c #(nop) WORKDIR /app", "Size": 0},
    {"CreatedBy": "/bin/sh -c #(nop)  ENV PORT=8080", "Size": 0},
    {"CreatedBy": "/bin/sh -c #(nop)  LABEL org.hakobune.managed=true", "Size": 0},
    {"CreatedBy": "", "Size": 143_507_351},
]
DIFF_IDS = [f"sha256:{n:x}" + "0" * 63 for n in range(1, 5)]


def test_a_builders_steps_are_written_as_dockerfile_lines():
    assert step_words("/bin/sh -c pip install flask") == "RUN pip install flask"
    assert step_words("/bin/sh -c #(nop) COPY dir:72e93f113cfadc626e11c059cdf882071a29f4e68ec2197c913402f3966a3a03 in . ") \
        == "COPY dir:72e93f113cfa… in ."
    assert step_words("RUN /bin/sh -c npm ci # buildkit") == "RUN npm ci"
    assert step_words("COPY . . # buildkit") == "COPY . ."


def test_an_images_history_gives_stack_dependencies_and_code_with_their_sizes():
    layers = image_layers(CLASSIC_HISTORY, DIFF_IDS, label="org.hakobune.managed",
                          shared={DIFF_IDS[0]: 3, DIFF_IDS[2]: 1})
    assert [layer.part for layer in layers] == [STACK, DEPENDENCIES, DEPENDENCIES, CODE]
    assert [layer.size_bytes for layer in layers] == [143_507_351, 17, 12_400_000, 5230]
    assert [layer.shared_with for layer in layers] == [3, 0, 1, 0]
    assert layers[2].step == "RUN pip install --no-cache-dir -r requirements.txt"
    assert layers[0].saves_bytes == 3 * 143_507_351 and layers[3].saves_bytes == 0
    assert layers[3].digest == DIFF_IDS[3].removeprefix("sha256:")[:12] == "4" + "0" * 11


def test_a_layer_of_no_bytes_is_found_among_the_steps_that_make_layers():
    # BuildKit's history: `RUN mkdir -p /app/data` that changed nothing still made a layer.
    history = [
        {"CreatedBy": "COPY . . # buildkit", "Size": 900},
        {"CreatedBy": "RUN /bin/sh -c mkdir -p /app/data # buildkit", "Size": 0},
        {"CreatedBy": "EXPOSE map[8080/tcp:{}]", "Size": 0},
        {"CreatedBy": "WORKDIR /app", "Size": 0},
        {"CreatedBy": "LABEL org.hakobune.managed=true", "Size": 0},
        {"CreatedBy": "", "Size": 1000},
    ]
    steps = layer_steps(history, 3)
    assert steps == [("", 1000), ("RUN mkdir -p /app/data", 0), ("COPY . .", 900)]
    assert part_of_layers([step for step, _ in steps], 1) == [STACK, DEPENDENCIES, CODE]


def test_a_history_that_does_not_match_the_layers_gives_no_sizes():
    steps = layer_steps([{"CreatedBy": "", "Size": 10}], 3)
    assert steps == [("", None)] * 3


def test_without_a_copy_of_the_whole_folder_the_last_layer_is_the_code():
    assert part_of_layers(["", "COPY file:abc in ./", "RUN go build"], 1) == [STACK, DEPENDENCIES, CODE]
    assert part_of_layers(["", "COPY --from=build /app/bin /app/bin"], 1) == [STACK, CODE]
    assert part_of_layers([""], 1) == [STACK]


# -- Cloud Run ---------------------------------------------------------------------------------------------------


def test_cloud_run_says_what_runs_the_service_with_its_own_values():
    from hakobune.runtime.cloud_run import CloudRunBackend

    backend = CloudRunBackend("cloudrun", project="acme-prod", region="asia-northeast1", concurrency=40)
    config = ReleaseConfig.from_dict({"cpu": "1", "memory_mb": 512, "instances": 3, "min_instances": 1})
    view = backend.under_the_hood(ServiceRef("acme", "hello"), config=config,
                                  state={"revision": "hello-acme-00004-xyz", "url": "https://hello-acme.run.app"})
    assert view.kind == "sandbox" and view.revision == "hello-acme-00004-xyz" and view.region == "asia-northeast1"
    assert (view.cpu, view.memory) == ("1", "512Mi")
    assert (view.min_instances, view.max_instances, view.concurrency) == (1, 3, 40)
    assert view.cpu_only_during_requests and view.execution_environment == ""
    with pytest.raises(HoodUnavailable) as raised:
        backend.under_the_hood(ServiceRef("acme", "hello"), config=config, state={})
    assert raised.value.why == "no_revision"


# -- the panel ------------------------------------------------------------------------------------------------------


@pytest.fixture
def live(team, owner, dummy_backend):
    """The owner's service with a live release the dummy backend runs."""
    service = create_service(team=team, name="hello", created_by=owner)
    build = Build.objects.create(service=service, number=1, status=BuildStatus.LIVE, image="hakobune/acme/hello:one")
    release = Release.objects.create(service=service, build=build, number=1, image=build.image,
                                     config={"memory_mb": 384, "cpu": "0.5"}, status=Release.Status.LIVE)
    service.live_release = release
    service.save(update_fields=["live_release"])
    dummy_backend.running[ServiceRef(team.name, service.name)] = object()
    return service


def hood_url(service):
    return reverse("observability:under_the_hood", args=[service.team.name, service.name])


def test_the_owner_sees_what_the_service_is_made_of(live, login, owner):
    page = login(owner).get(hood_url(live)).content.decode()
    assert "Namespaces: what it can see" in page and "4026532100" in page and "4026531830" in page
    assert 'data-bytes="402653184"' in page and "384 MiB" in page  # the release's 384 MiB
    assert 'data-count="0"' in page and "empty (0 capabilities)" in page
    assert "What root on the host has: 41 capabilities" in page
    assert page.count('class="hood-layer"') == 3 and 'data-shared="2"' in page
    assert "6.1.0-dummy" in page and "man7.org/linux/man-pages/man7/namespaces.7.html" in page


def test_the_service_page_loads_the_panel(live, login, owner):
    page = login(owner).get(reverse("services:detail", args=[live.team.name, live.name])).content.decode()
    assert f'hx-get="{hood_url(live)}"' in page


def test_members_of_any_role_see_it_and_outsiders_find_nothing(live, login, developer, viewer, outsider):
    for member in (developer, viewer):
        assert login(member).get(hood_url(live)).status_code == 200
    assert login(outsider).get(hood_url(live)).status_code == 404
    # The same 404 as a service that does not exist.
    assert login(outsider).get(reverse("observability:under_the_hood", args=[live.team.name, "nothing"])).status_code == 404


def test_staff_see_any_teams_and_a_logged_out_visitor_is_sent_to_log_in(live, client, login):
    staff = get_user_model().objects.create_user(username="sam", password="x", is_staff=True)
    assert login(staff).get(hood_url(live)).status_code == 200
    client.logout()
    answer = client.get(hood_url(live))
    assert answer.status_code == 302 and "/login/" in answer["Location"]


def test_a_service_not_deployed_or_not_running_says_so(team, owner, login, live, dummy_backend):
    fresh = create_service(team=team, name="fresh", created_by=owner)
    assert "Nothing runs yet" in login(owner).get(hood_url(fresh)).content.decode()
    dummy_backend.running.clear()
    assert "No instance of this service is running now" in login(owner).get(hood_url(live)).content.decode()


def test_the_panel_in_japanese(live, login, owner):
    client = login(owner)
    page = client.get(hood_url(live), HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    with translation.override("ja"):
        from django.utils.translation import gettext

        for words in ("Under the hood", "Namespaces: what it can see", "Cgroups: how much it may use",
                      "Capabilities: what it may do as root", "Image layers: its files",
                      "A container, not a virtual machine", "empty (0 capabilities)"):
            assert gettext(words) != words, words
            assert gettext(words) in page
    assert "Namespaces: what it can see" not in page


def test_a_runtime_without_the_capability_has_no_panel(live, login, owner, dummy_backend, monkeypatch):
    monkeypatch.setattr(type(dummy_backend), "capabilities", frozenset({"logs"}))
    assert login(owner).get(hood_url(live)).status_code == 404
    page = login(owner).get(reverse("services:detail", args=[live.team.name, live.name])).content.decode()
    assert hood_url(live) not in page


# -- the API: GET …/under-the-hood/ -------------------------------------------------------------------


def api_get(client, user, path):
    from hakobune.platform.accounts.tokens import create_api_token

    token = create_api_token(user=user, name="hood")[1]
    return client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")


def api_path(team, service):
    return f"/api/v1/teams/{team}/services/{service}/under-the-hood/"


def test_the_api_gives_the_team_the_same_reading(live, client, owner, viewer):
    for user in (owner, viewer):
        answer = api_get(client, user, api_path(live.team.name, live.name))
        assert answer.status_code == 200, answer.content
        body = answer.json()
        assert body["kind"] == "container" and body["sandbox"] is None
        container = body["container"]
        assert container["cgroups"]["memory_limit_bytes"] == 384 * 1024 * 1024
        assert container["cgroups"]["cpu_limit_cores"] == 0.5
        assert container["capabilities"]["effective"] == [] and container["capabilities"]["no_new_privileges"]
        assert [n["kind"] for n in container["namespaces"] if not n["shared"]] == ["pid", "net", "mnt", "uts", "ipc"]
        assert [layer["part"] for layer in container["layers"]] == ["stack", "dependencies", "code"]
        assert container["layers"][0]["shared_with"] == 2 and container["layers"][0]["saves_bytes"] == 300_000_000
        assert container["saved_bytes"] == 300_000_000


def test_the_api_gives_an_outsider_nothing_and_says_when_nothing_runs(live, client, owner, outsider, team,
                                                                      dummy_backend):
    answer = api_get(client, outsider, api_path(live.team.name, live.name))
    assert answer.status_code == 404
    assert api_get(client, outsider, api_path(live.team.name, "nothing")).status_code == 404
    assert client.get(api_path(live.team.name, live.name)).status_code == 401
    fresh = create_service(team=team, name="fresh", created_by=owner)
    answer = api_get(client, owner, api_path(team.name, fresh.name))
    assert answer.status_code == 409 and "has not been deployed yet" in answer.json()["error"]
    dummy_backend.running.clear()
    answer = api_get(client, owner, api_path(team.name, live.name))
    assert answer.status_code == 409 and "No instance of this service is running now" in answer.json()["error"]


def test_a_cloud_run_service_is_told_what_runs_it_instead(team, owner, login, settings, dummy_backend):
    settings.RUNTIME_BACKENDS = {
        "local": {"BACKEND": "hakobune.runtime.dummy.DummyBackend", "OPTIONS": {}},
        "cloudrun": {"BACKEND": "hakobune.runtime.cloud_run.CloudRunBackend",
                     "OPTIONS": {"project": "acme-prod", "region": "asia-northeast1"}},
    }
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    build = Build.objects.create(service=service, number=1, status=BuildStatus.LIVE, image="asia-docker.pkg.dev/x:1")
    release = Release.objects.create(
        service=service, build=build, number=1, image=build.image, status=Release.Status.LIVE,
        config={"memory_mb": 1024, "cpu": "2", "instances": 4, "concurrency": 20},
        runtime_state={"revision": "hello-acme-00007-abc", "service": "x", "url": "https://hello-acme-x.a.run.app"},
    )
    service.live_release = release
    service.save(update_fields=["live_release"])
    client = login(owner)
    page = client.get(hood_url(service)).content.decode()
    assert "A sandbox instead of a container on this host" in page and "gVisor" in page
    assert "hello-acme-00007-abc" in page and "asia-northeast1" in page and "<code>1024Mi</code>" in page
    assert "<dd>20</dd>" in page and "<dd>4</dd>" in page  # requests per instance, most instances
    assert "Namespaces: what it can see" not in page
    japanese = client.get(hood_url(service), HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "このホストのコンテナの代わりに、サンドボックス" in japanese and "hello-acme-00007-abc" in japanese
    body = api_get(client, owner, api_path(team.name, service.name)).json()
    assert body["kind"] == "sandbox" and body["container"] is None
    assert body["sandbox"]["revision"] == "hello-acme-00007-abc" and body["sandbox"]["max_instances"] == 4
