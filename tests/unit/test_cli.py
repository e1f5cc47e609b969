"""The `hakobune` command's own parts: what it packs, where it keeps
credentials, and its words when something is missing."""

import json
import stat
import tarfile

import pytest

from hakobune import cli


def write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_packing_honours_gitignore_and_hakobuneignore(tmp_path):
    write(tmp_path, {
        "app.py": "", "requirements.txt": "", ".git/config": "", "node_modules/x/index.js": "",
        "build/out.txt": "", "logs/a.log": "", "keep.log": "", "secrets/.env": "", "docs/guide.md": "",
        "src/nested/.gitignore": "*.tmp\n", "src/nested/a.tmp": "", "src/nested/b.py": "", "src/a.tmp": "",
        ".gitignore": "# deps\nnode_modules/\n/build\n*.log\n!keep.log\n",
        ".hakobuneignore": "docs/\nsecrets\n",
    })
    assert cli.files_to_pack(tmp_path) == [
        ".gitignore", ".hakobuneignore", "app.py", "keep.log", "requirements.txt", "src/a.tmp",
        "src/nested/.gitignore", "src/nested/b.py",
    ]
    archive, count = cli.pack(tmp_path, "myapp")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames())[0] == "myapp/.gitignore" and count == 8
    archive.unlink()


def test_double_star_patterns(tmp_path):
    rules = cli.IgnoreRules()
    rules.add("**/cache")
    rules.add("a/**/z.txt")
    assert rules.ignored("cache", True) and rules.ignored("x/y/cache", True)
    assert rules.ignored("a/z.txt", False) and rules.ignored("a/b/c/z.txt", False) and not rules.ignored("b/z.txt", False)


def test_credentials_are_readable_by_their_owner_only(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("HAKOBUNE_URL", raising=False)
    monkeypatch.delenv("HAKOBUNE_TOKEN", raising=False)
    path = cli.save_credentials("http://127.0.0.1:8000/", "hkb_x", "olivia")
    assert path == tmp_path / "hakobune" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["token"] == "hkb_x"
    assert cli.load_credentials() == ("http://127.0.0.1:8000", "hkb_x")
    monkeypatch.setenv("HAKOBUNE_URL", "http://ci.example:9000")
    monkeypatch.setenv("HAKOBUNE_TOKEN", "hkb_ci")
    assert cli.load_credentials() == ("http://ci.example:9000", "hkb_ci")


def test_without_credentials_it_says_how_to_log_in(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("HAKOBUNE_URL", raising=False)
    monkeypatch.delenv("HAKOBUNE_TOKEN", raising=False)
    assert cli.main(["services"]) == cli.EXIT_USAGE
    assert "hakobune login" in capsys.readouterr().err


def test_the_upload_body_is_multipart_and_reports_progress(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(b"x" * 200_000)
    bar = cli.ProgressBar(0, "Uploading")
    body = cli.MultipartUpload({"subdir": "web"}, "source", archive, "app.tar.gz", bar)
    bar.total = len(body)
    data = b"".join(iter(lambda: body.read(8192), b""))
    assert len(data) == len(body) and bar.done == len(body)
    assert b'name="source"; filename="app.tar.gz"' in data and data.endswith(f"--{body.boundary}--\r\n".encode())


@pytest.mark.parametrize("folder,name", [("My App", "my-app"), ("2048", "app-2048"), ("hello_world", "hello-world")])
def test_the_default_service_name_comes_from_the_folder(tmp_path, folder, name):
    (tmp_path / folder).mkdir()
    assert cli.default_service_name(tmp_path / folder) == name


class _Answer:
    def __init__(self, status, body, headers=None):
        self.status_code, self._body, self.headers, self.closed = status, body, headers or {}, False

    def json(self):
        return json.loads(self._body)

    def close(self):
        self.closed = True


class _Api:
    def __init__(self, answer):
        self.answer = answer

    def request(self, method, path, *, expect=(), **kwargs):
        assert self.answer.status_code in expect
        return self.answer


def test_a_portal_serving_all_the_streams_it_may_is_asked_again_after_retry_after():
    busy = _Answer(503, '{"error": "busy", "code": "too_many_streams"}', {"Retry-After": "0"})
    assert cli.open_stream(_Api(busy), "builds/1/log", {"follow": "1"}) is None and busy.closed
    down = _Answer(503, '{"error": "The portal is down for maintenance.", "code": "maintenance"}')
    with pytest.raises(cli.CliError, match="down for maintenance"):
        cli.open_stream(_Api(down), "builds/1/log", {"follow": "1"})
    fine = _Answer(200, "")
    assert cli.open_stream(_Api(fine), "builds/1/log", {"follow": "1"}) is fine


class _CancelApi:
    """Records what `hakobune cancel` asks the portal."""

    def __init__(self, latest):
        self.latest = latest
        self.posted = []

    def get(self, path, **kwargs):
        assert path == "teams/acme/services/web/"
        return {"latest_build": self.latest}

    def post(self, path, **kwargs):
        self.posted.append(path)
        return {"number": int(path.split("/")[-3]), "status": "cancelled"}


@pytest.mark.parametrize("given,latest,posted", [
    (None, {"number": 7, "status": "building"}, "teams/acme/services/web/builds/7/cancel/"),
    ("#3", {"number": 7, "status": "building"}, "teams/acme/services/web/builds/3/cancel/"),
])
def test_cancel_asks_for_the_newest_deploy_in_progress_or_the_one_named(monkeypatch, capsys, given, latest, posted):
    api = _CancelApi(latest)
    monkeypatch.setattr(cli, "api_from_config", lambda: api)
    argv = ["cancel", "--team", "acme", "--service", "web"] + ([given] if given else [])
    args = cli.build_parser().parse_args(argv)
    assert args.func(args) == cli.EXIT_OK
    assert api.posted == [posted]
    assert "Cancelled deploy" in capsys.readouterr().out


def test_cancel_without_a_deploy_in_progress_says_so(monkeypatch):
    monkeypatch.setattr(cli, "api_from_config", lambda: _CancelApi({"number": 7, "status": "live"}))
    args = cli.build_parser().parse_args(["cancel", "--team", "acme", "--service", "web"])
    with pytest.raises(cli.CliError, match="no deploy in progress"):
        args.func(args)


class _JobsApi:
    def __init__(self, jobs):
        self.jobs = jobs

    def get(self, path, **kwargs):
        assert path == "teams/acme/services/web/jobs/"
        return {"jobs": self.jobs}


def test_jobs_lists_each_job_with_its_next_run_and_latest_runs(monkeypatch, capsys):
    runs = [
        {"id": 2, "scheduled_for": "2026-11-30T07:40:00Z", "status": "failed", "exit_code": 3,
         "started_at": None, "ended_at": None, "detail": "the command exited with 3", "log": "Traceback\nKeyError"},
        {"id": 1, "scheduled_for": "2026-11-30T07:30:00Z", "status": "succeeded", "exit_code": 0,
         "started_at": None, "ended_at": None, "detail": "", "log": "cleared"},
    ]
    job = {"name": "clearsessions", "schedule": "*/10 * * * *", "command": "python manage.py clearsessions",
           "next_run": "2026-11-30T07:50:00Z", "runs": runs}
    monkeypatch.setattr(cli, "api_from_config", lambda: _JobsApi([job]))
    args = cli.build_parser().parse_args(["jobs", "--team", "acme", "--service", "web", "--runs", "1", "--log"])
    assert args.func(args) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "clearsessions  */10 * * * *  python manage.py clearsessions" in out
    assert "2026-11-30 07:50 UTC" in out
    assert "2026-11-30 07:40 UTC  failed    exit 3  the command exited with 3" in out
    assert "      KeyError" in out
    assert "07:30" not in out  # --runs 1: the latest run only


def test_jobs_without_any_says_how_to_add_one(monkeypatch, capsys):
    monkeypatch.setattr(cli, "api_from_config", lambda: _JobsApi([]))
    args = cli.build_parser().parse_args(["jobs", "--team", "acme", "--service", "web"])
    assert args.func(args) == cli.EXIT_OK
    assert "[[jobs]]" in capsys.readouterr().out


class _EnvApi:
    def __init__(self):
        self.sent = []

    def request(self, method, path, json=None):
        self.sent.append((method, path, json))
        return type("Answer", (), {"json": lambda self: {"release": None}})()


def test_env_set_sends_values_byte_for_byte(monkeypatch, capsys):
    api = _EnvApi()
    monkeypatch.setattr(cli, "api_from_config", lambda: api)
    pairs = ["TRAILING=ends in a space ", "NEWLINE=line\n", "EQUALS=a=b ", "EMPTY="]
    args = cli.build_parser().parse_args(["env", "--team", "acme", "--service", "web", "set", *pairs])
    assert args.func(args) == cli.EXIT_OK
    ((method, path, body),) = api.sent
    assert (method, path) == ("PUT", "teams/acme/services/web/env/")
    assert body["set"] == {"TRAILING": "ends in a space ", "NEWLINE": "line\n", "EQUALS": "a=b ", "EMPTY": ""}
