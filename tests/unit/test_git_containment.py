"""What git is given (issue #12, finding 8): the token only for the
repository's own URL, the URL and pins for both spellings of the host, and no
proxy but the administrator's. A stand-in `git` on PATH records its
arguments and environment and answers; nothing is fetched, no name is
resolved (the resolver is the test's), and no connection is opened. The
same promises against a real git server: tests/integration/test_git_containment.py."""

import json
import os
import sys
import textwrap

import pytest

from hakobune.worker.gitfetch import GitSource, fetch_git
from hakobune.worker.netguard import Policy, check_url
from hakobune.worker.source import SourceError

PUBLIC = "93.184.216.34"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "no_proxy",
                   "NO_PROXY", "ftp_proxy")


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """Puts a stand-in git first on PATH; returns the list of its runs, each
    {"args": [...], "env": {...}, "config": {key: value}} (the -c options and
    the GIT_CONFIG_* ones together)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "git-runs.jsonl"
    script = bin_dir / "git"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, sys
        with open({str(log)!r}, "a") as out:
            out.write(json.dumps({{"args": sys.argv[1:], "env": dict(os.environ)}}) + "\\n")
        if "rev-parse" in sys.argv:
            print("0" * 40)
    """))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    def runs():
        found = []
        for line in log.read_text().splitlines():
            run = json.loads(line)
            args, config = run["args"], {}
            while args and args[0] == "-c":
                key, _, value = args[1].partition("=")
                config.setdefault(key, []).append(value)
                args = args[2:]
            env = run["env"]
            for index in range(int(env.get("GIT_CONFIG_COUNT", "0"))):
                config.setdefault(env[f"GIT_CONFIG_KEY_{index}"], []).append(env[f"GIT_CONFIG_VALUE_{index}"])
            found.append({"args": args, "env": env, "config": config})
        return found

    return runs


def fetch(url, tmp_path, *, token="", proxy=None, resolver=lambda host, port: [PUBLIC]):
    with_proxy = {} if proxy is None else {"proxy": proxy}
    return fetch_git(GitSource(url=url, ref="main", token=token), tmp_path / "src", policy=Policy(),
                     resolver=resolver, log=lambda line: None, **with_proxy)


def test_the_token_is_sent_only_to_the_repositorys_own_url(recorded, tmp_path):
    fetch("https://git.example.com/team/app.git", tmp_path, token="ghp_secret")
    for run in recorded():
        assert "http.extraHeader" not in run["config"] and "http.extraheader" not in run["config"]
        headers = {key: value for key, value in run["config"].items() if key.lower().endswith(".extraheader")}
        assert list(headers) == ["http.https://git.example.com/team/app.git.extraHeader"]
        assert not any("ghp_secret" in arg for arg in run["args"])


def test_a_host_with_a_trailing_dot_is_fetched_by_its_checked_name_and_pinned_in_both_spellings(recorded, tmp_path):
    asked = []

    def resolver(host, port):
        asked.append(host)
        return [PUBLIC]

    fetch("https://Git.Example.com./team/app.git", tmp_path, resolver=resolver)
    assert asked == ["git.example.com"]
    fetched = next(run for run in recorded() if run["args"][0] == "fetch")
    assert fetched["args"][-2:] == ["https://git.example.com/team/app.git", "main"]
    assert set(fetched["config"]["http.curloptResolve"]) == {
        f"git.example.com:443:{PUBLIC}", f"git.example.com.:443:{PUBLIC}"}


def test_the_checked_url_names_the_host_as_checked():
    guarded = check_url("https://Git.Example.COM.:8443/a.git", Policy(), lambda host, port: [PUBLIC])
    assert guarded.url == "https://git.example.com:8443/a.git"
    assert guarded.pins == (f"git.example.com:8443:{PUBLIC}", f"git.example.com.:8443:{PUBLIC}")


def test_a_proxy_in_the_workers_environment_does_not_reach_git(recorded, tmp_path, monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, "http://proxy.invalid:3128")
    fetch("https://git.example.com/team/app.git", tmp_path)
    runs = recorded()
    assert runs
    for run in runs:
        assert not [name for name in run["env"] if name.lower().endswith("_proxy")]
        # and curl is told to use no proxy at all
        assert run["config"]["http.proxy"] == [""]


def test_the_administrators_proxy_is_the_only_one_git_uses(recorded, tmp_path, monkeypatch):
    monkeypatch.setenv("https_proxy", "http://other.invalid:3128")
    fetch("https://git.example.com/team/app.git", tmp_path, proxy="socks5://user:pw@proxy.internal:1080")
    for run in recorded():
        assert run["config"]["http.proxy"] == ["socks5://user:pw@proxy.internal:1080"]
        assert "https_proxy" not in run["env"]
        # never on the command line, where other users of the host can read it
        assert not any("pw@" in arg for arg in run["args"])
        assert run["config"]["http.curloptResolve"] == [f"git.example.com:443:{PUBLIC}",
                                                       f"git.example.com.:443:{PUBLIC}"]


@pytest.mark.parametrize("proxy", ["proxy.internal:3128", "ftp://proxy:21", "http://", "http://a b"])
def test_a_proxy_setting_that_is_not_a_proxy_url_is_refused(recorded, tmp_path, proxy):
    with pytest.raises(ValueError, match="SOURCE_GIT_PROXY must be an http://, https://, socks5:// or socks5h://"):
        fetch("https://git.example.com/team/app.git", tmp_path, proxy=proxy)


def test_a_refused_url_still_starts_no_git(recorded, tmp_path):
    with pytest.raises(SourceError, match="10.0.0.1 is a private network address"):
        fetch("https://10.0.0.1./app.git", tmp_path)
    with pytest.raises(FileNotFoundError):
        recorded()


def test_a_cancelled_build_kills_git_and_what_it_started(tmp_path, monkeypatch):
    import time

    from hakobune.worker.gitfetch import FetchStopped

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pids = tmp_path / "pids"
    script = bin_dir / "git"
    # A fetch that hangs, with a helper of its own (as git-remote-https is).
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import os, subprocess, sys, time
        if "fetch" in sys.argv:
            helper = subprocess.Popen(["sleep", "60"])
            open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{helper.pid}}")
            time.sleep(60)
    """))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    started = time.monotonic()
    with pytest.raises(FetchStopped):
        fetch_git(GitSource(url="https://git.example.com/a.git", ref="main"), tmp_path / "src", policy=Policy(),
                  resolver=lambda host, port: [PUBLIC], log=lambda line: None,
                  should_stop=lambda: pids.exists() and time.monotonic() - started > 0.5)
    assert time.monotonic() - started < 10
    for pid in map(int, pids.read_text().split()):
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"process {pid} still runs")
