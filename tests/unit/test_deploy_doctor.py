"""The deploy doctor: each way a beginner's deploy fails is read into one
diagnosis (a rule id with parameters, platform/diagnoses.py) that says what
happened and what to change, in English or Japanese. One test per rule; the
fixture app failing each way is deployed for real in
tests/integration/test_fixture_apps.py."""

import io
import re
import zipfile
from types import SimpleNamespace

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils.translation import override

from hakobune.platform.diagnoses import RULES, Diagnosis, diagnose
from hakobune.platform.failures import FailureKind
from hakobune.platform.services.forms import ArchiveField
from hakobune.platform.services.releases import _name_the_sqlite_file
from hakobune.runtime import doctor
from hakobune.runtime.docker_local import DockerLocalBackend
from hakobune.worker.builder import out_of_memory
from hakobune.worker.buildpacks import NoStackDetected, detect
from hakobune.worker.buildpacks import doctor as detect_doctor
from hakobune.worker.source import Limits, SourceError, extract_archive
from tests.conftest import APPS_DIR, archive_of

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def tcp(*rows):
    """The text of /proc/net/tcp with these (hex address:port, state) rows."""
    return HEADER + "".join(
        f"   {i}: {local} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000  1000        0 {i} 1\n"
        for i, (local, state) in enumerate(rows)
    )


def words(finding, language="en"):
    diagnosis = diagnose(finding)
    with override(language):
        return diagnosis.in_words()


# -- what the app listens on ------------------------------------------------------------------


def test_the_listening_sockets_are_read_from_proc_net_tcp_and_tcp6():
    text = tcp(("0100007F:1F90", "0A"), ("00000000:1388", "0A"), ("0100007F:1F90", "01")) + (
        "   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 0 0 0 0 0\n"
        "   1: 0000000000000000FFFF00000100007F:0051 00000000000000000000000000000000:0000 0A 0 0 0 0 0\n"
    )
    assert doctor.listening_sockets(text) == [
        doctor.Socket("127.0.0.1", 8080), doctor.Socket("0.0.0.0", 5000),  # the connection (01) is not listening
        doctor.Socket("::1", 8081), doctor.Socket("127.0.0.1", 81),
    ]


def test_an_app_listening_on_127_0_0_1_is_told_the_address_it_opened():
    finding = doctor.no_answer(port=8080, seconds=60, sockets=[doctor.Socket("127.0.0.1", 8080)], tail=[])
    assert (finding.rule, finding.params["address"], finding.params["port"]) == ("runtime.listens_on_loopback", "127.0.0.1", 8080)
    said = words(finding)
    assert "listens on 127.0.0.1 port 8080, an address only the container itself can reach" in said
    assert "0.0.0.0" in said and "$PORT" in said
    assert "127.0.0.1" in words(finding, "ja") and "0.0.0.0" in words(finding, "ja")


def test_an_app_listening_on_another_port_is_told_which_and_how_to_read_port():
    finding = doctor.no_answer(port=8080, seconds=60, sockets=[doctor.Socket("0.0.0.0", 5000)], tail=[])
    assert finding.rule == "runtime.listens_on_other_port"
    said = words(finding)
    assert "listens on port 5000, but Hakobune sends requests to port 8080" in said
    assert "set the service's port to 5000" in said


def test_an_app_on_another_port_of_loopback_is_told_both():
    finding = doctor.no_answer(port=8080, seconds=60, sockets=[doctor.Socket("::1", 3000)], tail=[])
    assert finding.rule == "runtime.listens_on_other_port_loopback"
    assert "listens on ::1 port 3000: another port than the 8080" in words(finding)


def test_an_app_listening_nowhere_is_told_to_start_a_web_server_or_be_a_worker():
    finding = doctor.no_answer(port=8080, seconds=60, sockets=[], tail=["done"])
    assert finding.rule == "runtime.listens_nowhere"
    assert "listened on no port at all" in words(finding) and "worker:" in words(finding)


def test_an_app_listening_on_port_that_never_speaks_http_is_told_so():
    finding = doctor.no_answer(port=8080, seconds=60, sockets=[doctor.Socket("0.0.0.0", 8080)], tail=[])
    assert finding.rule == "runtime.no_http"
    assert "did not answer HTTP there within 60 s" in words(finding)


def test_without_its_sockets_the_doctor_says_what_it_knows():
    finding = doctor.no_answer(port=8080, seconds=60, sockets=None, tail=[])
    assert finding.rule == "runtime.no_answer"
    assert words(finding).startswith("The app did not answer HTTP on port 8080 ($PORT) within 60 s")


class _Container:
    """What DockerLocalBackend._listening asks of a container."""

    id = "c0ffee"

    def __init__(self, output, pid=0):
        self.attrs = {"State": {"Pid": pid}}
        self.output = output
        self.execs = []

    def reload(self):
        pass

    def exec_run(self, command, **kwargs):
        self.execs.append(command)
        return 0, self.output


def test_the_local_runtime_reads_the_sockets_inside_the_container_through_the_engine():
    backend = DockerLocalBackend.__new__(DockerLocalBackend)
    container = _Container(tcp(("00000000:1388", "0A")).encode())
    assert backend._listening(container) == [doctor.Socket("0.0.0.0", 5000)]
    assert container.execs == [["cat", "/proc/net/tcp", "/proc/net/tcp6"]]
    # A process of this host's /proc that is not the container's is never read as its.
    container = _Container(b"", pid=1)
    assert backend._listening(container) is None and container.execs
    # An image without `cat`: the engine's error is not taken for a listing of no sockets.
    container = _Container(b'OCI runtime exec failed: exec: "cat": executable file not found in $PATH')
    assert backend._listening(container) is None


# -- the start command exits at once ------------------------------------------------------------


def test_a_start_command_that_exits_is_told_its_exit_code_and_error_line():
    tail = ["Traceback (most recent call last):", '  File "main.py", line 5', "RuntimeError: DATABASE_URL is not set"]
    finding = doctor.stopped_at_start(process="web", exit_code=3, oom_killed=False, memory_mb=256, tail=tail)
    assert finding.rule == "runtime.exited_at_start" and finding.log_tail == tail
    said = words(finding)
    assert "stopped while starting, with exit code 3: RuntimeError: DATABASE_URL is not set" in said
    assert "終了コード 3" in words(finding, "ja")


def test_a_start_command_that_exits_without_a_word_is_told_to_check_the_command():
    finding = doctor.stopped_at_start(process="worker", exit_code=0, oom_killed=False, memory_mb=256, tail=[])
    assert finding.rule == "runtime.exited_at_start_silent"
    assert "The worker process stopped while starting, with exit code 0, and printed nothing" in words(finding)


# -- a module missing at import -----------------------------------------------------------------


@pytest.mark.parametrize("line, module, package, file", [
    ("ModuleNotFoundError: No module named 'yaml'", "yaml", "PyYAML", "requirements.txt"),
    ("ModuleNotFoundError: No module named 'requests.adapters'", "requests", "requests", "requirements.txt"),
    ("Error: Cannot find module 'express'", "express", "express", "package.json"),
    ("Error: Cannot find module '@fastify/static/lib'", "@fastify/static/lib", "@fastify/static", "package.json"),
    ("<internal:/usr/lib/ruby/3.1.0/rubygems/core_ext/kernel_require.rb>:85:in `require': cannot load such file -- sinatra (LoadError)",
     "sinatra", "sinatra", "Gemfile"),
])
def test_a_module_missing_at_import_is_named_with_the_file_to_add_it_to(line, module, package, file):
    tail = ["[INFO] Booting worker with pid: 7", line, "[INFO] Worker exiting (pid: 7)"]
    finding = doctor.stopped_at_start(process="web", exit_code=3, oom_killed=False, memory_mb=256, tail=tail)
    assert finding.rule == "runtime.module_missing"
    assert (finding.params["module"], finding.params["package"], finding.params["file"]) == (module, package, file)
    assert f"Add the package that provides it, {package}, to {file}" in words(finding)
    assert file in words(finding, "ja") and package in words(finding, "ja")


def test_a_missing_file_of_the_app_itself_is_not_taken_for_a_package():
    tail = ["Error: Cannot find module './routes/index'"]
    finding = doctor.stopped_at_start(process="web", exit_code=1, oom_killed=False, memory_mb=256, tail=tail)
    assert finding.rule == "runtime.exited_at_start"


# -- out of memory ------------------------------------------------------------------------------


@pytest.mark.parametrize("memory, suggested", [(128, 256), (256, 512), (1000, 1024), (16384, 32768)])
def test_the_next_size_up_is_the_one_that_would_fit(memory, suggested):
    assert doctor.next_memory_size(memory) == suggested


def test_out_of_memory_at_start_says_the_size_it_had_and_the_one_to_give():
    for flagged, code in ((True, 137), (False, 137)):
        finding = doctor.stopped_at_start(process="web", exit_code=code, oom_killed=flagged, memory_mb=128,
                                          tail=["loading the data into memory"])
        assert (finding.rule, finding.params["memory"], finding.params["suggested"]) == ("runtime.out_of_memory", 128, 256)
    said = words(finding)
    assert "ran out of memory while starting: it may use 128 MiB" in said and "Give it 256 MiB" in said
    assert "256 MiB" in words(finding, "ja")


def test_out_of_memory_during_the_build_says_the_step_and_the_size_builds_would_need():
    params = out_of_memory("The command '/bin/sh -c npm run build' returned a non-zero code: 137", "RUN npm run build", 2048)
    assert params == {"command": "npm run build", "memory": 2048}
    assert out_of_memory("returned a non-zero code: 1", "RUN npm run build", 2048) is None
    error = Exception("Your app's build command failed")
    error.rule, error.params, error.user_error = "build.out_of_memory", params, True
    diagnosis = diagnose(error)
    assert diagnosis.params["suggested"] == 4096 and diagnosis.kind == FailureKind.USER
    assert "`npm run build` was stopped with exit code 137" in diagnosis.in_english()
    assert "4096 MiB (BUILD_MEMORY_MB)" in diagnosis.in_english()


# -- the health check answers an error ----------------------------------------------------------


def test_an_error_status_at_the_health_check_says_the_status_and_the_error_not_the_port():
    tail = ["[ERROR] Exception on / [GET]", "jinja2.exceptions.TemplateNotFound: index.html"]
    finding = doctor.unhealthy(status=500, path="/", port=8080, seconds=60, tail=tail)
    assert finding.rule == "runtime.health_check_status"
    said = words(finding)
    assert "answered its health check (/) with HTTP 500 for 60 s: jinja2.exceptions.TemplateNotFound: index.html" in said
    assert "not its port or address" in said and "0.0.0.0" not in said
    silent = doctor.unhealthy(status=503, path="/health", port=8080, seconds=60, tail=["GET /health 503"])
    assert silent.rule == "runtime.health_check_status_silent" and "(/health) with HTTP 503" in words(silent)


def test_django_refusing_its_own_address_is_told_to_list_it_in_allowed_hosts():
    tail = ["Invalid HTTP_HOST header: 'mysite-acme.localhost'. You may need to add 'mysite-acme.localhost' to ALLOWED_HOSTS.",
            "Bad Request: /"]
    finding = doctor.host_refused(host="mysite-acme.localhost", tail=tail)
    assert finding.rule == "runtime.host_not_allowed"
    assert 'ALLOWED_HOSTS = ["mysite-acme.localhost"]' in words(finding)
    assert doctor.host_refused(host="mysite-acme.localhost", tail=["Bad Request: /"]) is None


# -- the Django tutorial's SQLite file ------------------------------------------------------------


def test_the_django_tutorial_project_is_found_to_keep_its_data_in_db_sqlite3():
    detection = detect(APPS_DIR / "django-tutorial")
    assert detection.plan.sqlite_files == ("db.sqlite3",)
    assert any("keeps its data in a SQLite file (db.sqlite3)" in note for note in detection.plan.notes)
    assert detect(APPS_DIR / "django-static").plan.sqlite_files == ()


def test_a_sqlite_file_beside_the_code_is_found_too(tmp_path):
    (tmp_path / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    (tmp_path / "requirements.txt").write_text("flask\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.sqlite3").write_bytes(b"SQLite format 3\x00")
    assert detect(tmp_path).plan.sqlite_files == ("data/notes.sqlite3",)
    # A settings file in a subfolder: BASE_DIR is the project's folder.
    (tmp_path / "site" / "conf").mkdir(parents=True)
    (tmp_path / "site" / "conf" / "settings.py").write_text(
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': os.path.join(BASE_DIR, 'app.db')}}")
    assert detect_doctor.sqlite_files(tmp_path) == ["site/app.db", "data/notes.sqlite3"]


def test_a_database_file_that_cannot_be_written_is_named_with_why():
    tail = ["Internal Server Error: /", "Traceback (most recent call last):",
            "django.db.utils.OperationalError: unable to open database file"]
    finding = doctor.unhealthy(status=500, path="/", port=8080, seconds=60, tail=tail)
    assert finding.rule == "runtime.sqlite_unwritable_unnamed"
    # The build's plan names the file.
    release = SimpleNamespace(build_id=1, build=SimpleNamespace(plan={"sqlite_files": ["db.sqlite3"]}))
    _name_the_sqlite_file(finding, release)
    said = words(finding)
    assert said.startswith("The app could not write its SQLite database, db.sqlite3 "
                           "(django.db.utils.OperationalError: unable to open database file)")
    assert "read-only" in said and "PostgreSQL add-on" in said and "migrate" in said and "volume" in said
    assert "db.sqlite3" in words(finding, "ja") and "読み取り専用" in words(finding, "ja")
    # At start too, and for a write to a file that was uploaded.
    at_start = doctor.stopped_at_start(process="web", exit_code=1, oom_killed=False, memory_mb=256,
                                       tail=["sqlite3.OperationalError: attempt to write a readonly database"])
    assert at_start.rule == "runtime.sqlite_unwritable_unnamed" and "could not write its SQLite database (" in words(at_start)


# -- the Procfile -------------------------------------------------------------------------------


def test_a_procfile_of_workers_only_is_valid_and_runs_without_a_url():
    plan = detect(APPS_DIR / "procfile-without-web").plan
    assert plan.web is False and plan.processes == {"worker": "python worker.py"}


def test_a_procfile_with_no_process_is_the_error(tmp_path):
    with pytest.raises(NoStackDetected) as raised:
        detect(APPS_DIR / "procfile-empty")
    assert raised.value.rule == "detect.procfile_empty"
    assert words(raised.value).startswith("The Procfile names no process")
    (tmp_path / "Procfile").write_text("release: python manage.py migrate\n")
    (tmp_path / "requirements.txt").write_text("flask\n")
    with pytest.raises(NoStackDetected) as raised:
        detect(tmp_path)
    assert raised.value.rule == "detect.procfile_no_web" and "`release`" in words(raised.value)


# -- the upload ---------------------------------------------------------------------------------


def test_an_upload_that_is_not_an_archive_is_refused_before_and_during_intake(tmp_path):
    page = b"<!doctype html><title>Download</title>\n" * 20
    refused = ArchiveField()
    with pytest.raises(Exception) as raised:
        refused.clean(SimpleUploadedFile("app.zip", page))
    assert "is named like an archive, but it is not one" in " ".join(raised.value.messages)
    archive = tmp_path / "upload"
    archive.write_bytes(page)
    with pytest.raises(SourceError) as raised:
        extract_archive(archive, tmp_path / "out")
    assert raised.value.rule == "source.not_archive"
    assert "not an archive Hakobune can read" in words(raised.value)
    # A real archive passes the field, and is read from its start afterwards.
    good = SimpleUploadedFile("app.zip", archive_of("flask-hello", "zip"))
    assert refused.clean(good).read(4) == b"PK\x03\x04"


def test_an_upload_too_big_says_its_size_the_limit_and_what_to_leave_out(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("app/app.py", "x" * 3000)
    archive = tmp_path / "upload.zip"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(SourceError) as raised:
        extract_archive(archive, tmp_path / "out", Limits(max_archive_bytes=1000))
    assert raised.value.rule == "source.too_big" and raised.value.params["limit"] == "0"
    assert "node_modules" in words(raised.value)
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    with pytest.raises(SourceError) as raised:
        extract_archive(empty, tmp_path / "out2")
    assert raised.value.rule == "source.empty"


# -- no recognizable app --------------------------------------------------------------------------


def test_no_recognizable_app_says_what_would_make_it_one_and_the_nearest_sample():
    with pytest.raises(NoStackDetected) as raised:
        detect(APPS_DIR / "no-app")
    error = raised.value
    assert error.rule == "detect.unrecognized"
    assert error.params["found"] == "README.md, notes.txt"
    said = words(error)
    assert "it found README.md, notes.txt" in said and "Adding index.html would make it one" in said
    assert '"static site"' in said and "requirements.txt" in said and "package.json" in said
    japanese = words(error, "ja")
    assert "README.md" in japanese and "index.html" in japanese and "静的サイト" in japanese


@pytest.mark.parametrize("files, needs, sample", [
    ({"hello.py": "print('hi')"}, "requirements.txt", "Flask"),
    ({"server.py": "from fastapi import FastAPI"}, "requirements.txt", "FastAPI"),
    ({"mysite/settings.py": "INSTALLED_APPS = ['django.contrib.admin']"}, "requirements.txt", "Django"),
    ({"bot.js": "console.log('hi')"}, "package.json", "Node/Express"),
    ({"pages/about.html": "<h1>hi</h1>"}, "index.html", "static site"),
])
def test_the_nearest_sample_follows_what_the_folder_holds(tmp_path, files, needs, sample):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    with pytest.raises(NoStackDetected) as raised:
        detect(tmp_path)
    assert (raised.value.params["needs"], raised.value.params["sample"]) == (needs, sample)


def test_an_empty_folder_is_offered_a_sample_to_start_from(tmp_path):
    with pytest.raises(NoStackDetected) as raised:
        detect(tmp_path)
    assert raised.value.rule == "detect.unrecognized_empty"
    assert "the folder holds no files" in words(raised.value)


def test_apps_in_subfolders_keep_their_own_advice():
    with pytest.raises(NoStackDetected) as raised:
        detect(APPS_DIR / "monorepo")
    assert getattr(raised.value, "rule", None) is None
    assert "set the service's folder" in diagnose(raised.value).in_english()


# -- every rule ---------------------------------------------------------------------------------

DOCTOR_RULES = sorted(rule for rule in RULES if re.match(
    r"runtime\.(?!failed|platform)|build\.out_of_memory|detect\.(procfile|unrecognized)|source\.(not_archive|too_big|empty)", rule))


@pytest.mark.parametrize("rule", DOCTOR_RULES)
def test_every_doctor_rule_reads_in_japanese_with_all_its_parameters(rule):
    names = set(re.findall(r"%\((\w+)\)s", RULES[rule].text))
    params = {name: f"<{name}>" for name in names}
    diagnosis = Diagnosis(rule, params)
    assert diagnosis.kind == FailureKind.USER
    english = diagnosis.in_english()
    with override("ja"):
        japanese = diagnosis.in_words()
    assert japanese != english and re.search(r"[ぁ-んァ-ン一-龥]", japanese)
    for name in names:
        assert f"<{name}>" in english and f"<{name}>" in japanese, name


# -- out of memory while running ----------------------------------------------------------------


class _Live:
    def __init__(self, status, oom, memory_mb, restarts=0, process="web"):
        self.id = self.name = f"c-{process}"
        self.status = status
        self.labels = {"hakobune.process": process}
        self.attrs = {"State": {"OOMKilled": oom, "ExitCode": 137 if oom else 0}, "RestartCount": restarts,
                      "HostConfig": {"Memory": memory_mb * 1024 * 1024}}


def test_instances_killed_for_memory_while_running_are_diagnosed_with_the_next_size(monkeypatch):
    backend = DockerLocalBackend.__new__(DockerLocalBackend)
    monkeypatch.setattr(backend, "_containers", lambda ref: [_Live("restarting", True, 256, restarts=4), _Live("running", False, 256)])
    status = backend.status(None)
    assert status.state == "crashed" and status.rule == "runtime.out_of_memory_running"
    assert status.params == {"process": "web", "kills": 1, "memory": 256, "suggested": 512}
    said = Diagnosis(status.rule, status.params).in_english()
    assert "ran out of memory while running" in said and "Give it 512 MiB" in said
    monkeypatch.setattr(backend, "_containers", lambda ref: [_Live("running", False, 256)])
    assert backend.status(None).rule == ""


def test_the_runtime_line_of_the_service_page_shows_the_diagnosis_to_members_only(login, owner, outsider, team, monkeypatch):
    from hakobune.platform.observability import views
    from hakobune.platform.services.services import create_service
    from hakobune.runtime.base import ServiceStatus

    create_service(team=team, name="hello", created_by=owner)
    status = ServiceStatus(state="running", detail="1 of 1 instance(s) running", rule="runtime.out_of_memory_running",
                           params={"process": "web", "kills": 2, "memory": 256, "suggested": 512})
    monkeypatch.setattr(views, "backend_for", lambda service: SimpleNamespace(status=lambda ref: status))
    page = login(owner).get("/t/acme/hello/runtime/", HTTP_ACCEPT_LANGUAGE="ja")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="runtime-diagnosis"' in text and "512 MiB" in text and "メモリ" in text
    assert login(outsider).get("/t/acme/hello/runtime/").status_code == 404


# -- what the service page says -------------------------------------------------------------------


def _live(team, owner):
    from hakobune.platform.builds.models import Build
    from hakobune.platform.builds.state import advance
    from hakobune.platform.builds.status import BuildStatus as S
    from hakobune.platform.services.services import create_service, deploy_service
    from hakobune.worker import tasks
    from tests.conftest import upload_of

    service = create_service(team=team, name="hello", created_by=owner)
    build = deploy_service(service=service, source_file=upload_of("django-tutorial"), created_by=owner)
    for current, following in [(S.QUEUED, S.FETCHING), (S.FETCHING, S.DETECTING), (S.DETECTING, S.BUILDING),
                               (S.BUILDING, S.DEPLOYING)]:
        advance(build.id, current, following)
    plan = detect(APPS_DIR / "django-tutorial").plan.to_dict()
    Build.objects.filter(id=build.id).update(image="hakobune/acme/hello:1", plan=plan)
    tasks.deploy_release(build.id)
    service.refresh_from_db()
    return service


def test_the_service_page_says_where_a_sqlite_project_would_keep_its_data(login, owner, outsider, team, dummy_backend,
                                                                          queued_tasks):
    _live(team, owner)
    page = login(owner).get("/t/acme/hello/").content.decode()
    assert 'id="sqlite-data"' in page and "<code>db.sqlite3</code>" in page
    assert 'href="/teams/acme/addons/"' in page and "python manage.py migrate" in page and "volume" in page
    japanese = login(owner).get("/t/acme/hello/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "このアプリのデータの置き場所" in japanese and "読み取り専用" in japanese
    assert login(outsider).get("/t/acme/hello/").status_code == 404


def test_a_live_app_of_workers_only_says_it_runs_without_an_address(login, owner, team, dummy_backend, queued_tasks):
    from hakobune.platform.services.models import Service

    service = _live(team, owner)
    page = login(owner).get("/t/acme/hello/").content.decode()
    assert "Your app is live at" in page and 'id="service-no-web"' not in page
    Service.objects.filter(id=service.id).update(serves_web=False)
    page = login(owner).get("/t/acme/hello/").content.decode()
    assert 'id="service-no-web"' in page and "no URL leads to it" in page and 'id="service-url"' not in page
