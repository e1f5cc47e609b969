"""Ruby apps: a Gemfile (installed with Bundler: deployment mode when
Gemfile.lock is there, gems in /opt/bundle, without the development and test
groups; a Gemfile that names no gem source takes its gems from the stack,
which has Debian's packaged gems, Rails and Sinatra among them, with
`bundle install --local`), or a config.ru alone (served by the stack's Rack and Puma, from
Debian, with nothing to install). Started by the Procfile's `web:` line, else
Rails' server for a Rails app, else Puma (or `rackup` when the Gemfile has no
Puma) for a config.ru.

The Ruby version: the Gemfile's `ruby` line (Bundler's rules: "3.1.2" is that
release), else .ruby-version (its line: 3.1.4 asks for 3.1).

Gems come from the Gemfile's own source; when the host sets RUBYGEMS_SOURCE
(a mirror of rubygems.org), Bundler takes rubygems.org's gems from there."""

from __future__ import annotations

import re
from pathlib import Path

from ._files import is_file, read_text, walk
from .plan import BuildPlan, Detection

NAME = "Ruby"
KEY = "ruby"
LOOKS_FOR = (
    "a Gemfile (installed with Bundler) with a config.ru, Rails, or a Procfile `web:` line; or a config.ru alone "
    "(served by Rack and Puma); or a Procfile whose `web:` line starts a .rb file"
)

GEM = re.compile(r"""^\s*gem\s+['"](?P<name>[\w.-]+)['"]""", re.MULTILINE)
# The Gemfile's `ruby "3.1.2"`, `ruby "~> 3.1"`, `ruby ">= 3.0", "< 3.4"`.
RUBY_LINE = re.compile(r"""^\s*ruby\s*\(?\s*(?P<specs>(?:['"][^'"\n]+['"]\s*,?\s*)+)""", re.MULTILINE)
QUOTED = re.compile(r"""['"]([^'"\n]+)['"]""")
RUBY_VERSION_FILE = re.compile(r"^(?:ruby-)?(?P<version>\d+\.\d+)(?:\.\d+)?")
# A Procfile command that runs Ruby: `ruby app.rb`, `bundle exec puma -C config/puma.rb`.
RUNS_RUBY = re.compile(r"^(?:[A-Za-z_]\w*=\S*\s+)*(?:exec\s+)?(?:bundle\s+exec\s+)?(?:\S*/)?"
                       r"(?:ruby|rackup|puma|rails|unicorn|thin|falcon|hanami|bin/rails)(?:\s|$)")
RB_FILE = re.compile(r"(?:^|\s)(?:\./)?(?P<name>[\w/.-]+\.rb)\b")

BUNDLE_ENV = {
    # Gems outside /app, so that the app's code copied over /app never hides them.
    "BUNDLE_PATH": "/opt/bundle",
    # Bundler's settings from here and the environment, not from an app's own .bundle/config.
    "BUNDLE_APP_CONFIG": "/opt/bundle/.config",
    "BUNDLE_WITHOUT": "development:test",
    "BUNDLE_SILENCE_ROOT_WARNING": "1",
    # The instance's root filesystem is read-only; Bundler writes here.
    "BUNDLE_USER_HOME": "/tmp/.bundle",
    "RACK_ENV": "production",
}
RAILS_ENV = {
    "RAILS_ENV": "production",
    "RAILS_LOG_TO_STDOUT": "1",
    "RAILS_SERVE_STATIC_FILES": "1",
}
# rubygems.org's gems from the host's mirror, when it sets one (package_sources.py).
USE_MIRROR = ('if [ -n "${RUBYGEMS_SOURCE:-}" ]; then bundle config set --global mirror.https://rubygems.org '
              '"$RUBYGEMS_SOURCE"; fi')
INSTALL = f"{USE_MIRROR} && bundle install --jobs 4"
RACKUP = "rackup --port $PORT --host 0.0.0.0"
# A Gemfile that names no gem source: its gems are the stack's own (Debian's
# ruby-* packages, installed system-wide), so Bundler resolves them there and
# fetches nothing. Not in /opt/bundle: Bundler with a path of its own does not
# see the system's gems.
SOURCE_LINE = re.compile(r"""^\s*source\s*\(?\s*['"]""", re.MULTILINE)
INSTALL_LOCAL = "bundle install --local"
LOCAL_ENV = {key: value for key, value in BUNDLE_ENV.items() if key != "BUNDLE_PATH"}
# Rails writes pids and caches under tmp/; the instance's files are read-only
# but for /tmp, so the app's tmp/ is the instance's /tmp.
RAILS_TMP = "rm -rf tmp && ln -s /tmp tmp"


# Bundler's words when `bundle install --local` needs a gem the stack lacks:
# "Could not find gem 'nokogiri (>= 1.15)' in locally installed gems."
NOT_IN_STACK = re.compile(r"Could not find gem '(?P<gem>[^']{1,200})' in locally installed gems")


def missing_stack_gem(lines: list[str]) -> str:
    """The gem (with the version asked for) that a Gemfile of no gem source
    needs and the Ruby stack does not have, from a failed install's output;
    "" when it says no such thing."""
    found = ""
    for line in lines:
        match = NOT_IN_STACK.search(line)
        if match:
            found = match["gem"].strip()
    return found


def detect(src: Path, *, start_command: str = "") -> Detection | None:
    """With `start_command` (a Procfile's web line), a Gemfile alone is
    enough; without a Gemfile, the command must run Ruby."""
    if is_file(src, "Gemfile"):
        return _with_gemfile(src, start_command)
    if start_command:
        return _procfile_only(src, start_command)
    if is_file(src, "config.ru"):
        return _rack_only(src)
    return None


def _with_gemfile(src: Path, start_command: str) -> Detection | None:
    gemfile = read_text(src, "Gemfile")
    gems = set(GEM.findall(gemfile))
    locked = is_file(src, "Gemfile.lock")
    version, version_source = _ruby_version(src, gemfile)
    rails = "rails" in gems or "railties" in gems or is_file(src, "config/application.rb") and is_file(src, "bin/rails")
    local = not SOURCE_LINE.search(gemfile)
    env = dict(LOCAL_ENV if local else BUNDLE_ENV)
    if locked:
        # Deployment mode installs into a path of its own; the stack's gems are system-wide.
        env["BUNDLE_FROZEN" if local else "BUNDLE_DEPLOYMENT"] = "1"
    notes = []
    if not locked and not local:
        notes.append("Commit your Gemfile.lock (run `bundle lock`) so every build installs the same gem versions; "
                     "without it the build resolves them again, and deployment mode is off.")
    build: tuple[str, ...] = ()
    release = ""
    if start_command:
        start, how = start_command, f"the app's own start command (`{start_command}`)"
    elif rails:
        env.update(RAILS_ENV)
        notes.append("Rails needs SECRET_KEY_BASE when it runs: set it in the service's variables (a long random "
                     "string; `bin/rails secret` makes one). The build precompiles without it.")
        start = "bundle exec rails server --binding 0.0.0.0 --port $PORT"
        how = "Rails' server (`rails server`)"
        if is_file(src, "app/assets/config/manifest.js") or gems & {"sprockets-rails", "propshaft"}:
            # The app's secrets are not in the build; Rails 7.1+ takes a dummy for precompiling.
            build = ("SECRET_KEY_BASE_DUMMY=1 bundle exec rails assets:precompile",)
            how += "; its assets are precompiled at build time"
        build += (RAILS_TMP,)
        if walk(src / "db" / "migrate", "*.rb", max_depth=0) and not (src / "db").is_symlink():
            release = "bundle exec rails db:migrate"
            how += "; its migrations run in the release phase (`rails db:migrate`)"
    elif is_file(src, "config.ru") and "puma" in gems:
        # Puma reads config.ru itself (and config/puma.rb), whatever the Rack version.
        start, how = "bundle exec puma --bind tcp://0.0.0.0:$PORT", "Puma (`bundle exec puma`, config.ru)"
    elif is_file(src, "config.ru"):
        start, how = f"bundle exec {RACKUP}", "`bundle exec rackup` (config.ru)"
        if "rack" not in gems and not gems & {"sinatra", "roda", "hanami", "grape", "rails"}:
            notes.append("`bundle exec rackup` needs Rack in the bundle: add `gem \"rack\"` (and `gem \"rackup\"` for "
                         "Rack 3) to the Gemfile.")
        notes.append("Add `gem \"puma\"` to the Gemfile: Hakobune then serves config.ru with Puma, a server for "
                     "production (rackup without it serves with WEBrick, one request at a time).")
    else:
        return None
    dependency_files = ["Gemfile"] + (["Gemfile.lock"] if locked else [])
    dependency_files += [name for name in _files_the_gemfile_reads(src, gemfile) if name not in dependency_files]
    plan = BuildPlan(
        stack="ruby",
        dependency_files=tuple(dependency_files),
        install_commands=(INSTALL_LOCAL if local else INSTALL,),
        build_commands=build,
        start_command=start,
        env=env,
        release_command=release,
        language_version=version,
        sources={"language_version": version_source} if version else {},
        notes=tuple(notes),
    )
    if local:
        lock_words = ("no gem source: its gems are the Ruby stack's own, Debian's packages "
                      f"(`{INSTALL_LOCAL}`, nothing fetched)")
    elif locked:
        lock_words = "Gemfile.lock (Bundler, deployment mode)"
    else:
        lock_words = "no Gemfile.lock (Bundler resolves the versions)"
    reason = f"found a Gemfile with {lock_words}{', a Rails app' if rails else ''}, started with {how}"
    if version:
        reason += f"; it asks for Ruby {version} ({version_source})"
    return Detection(stack="ruby", reason=reason, plan=plan)


def _rack_only(src: Path) -> Detection:
    """A config.ru and no Gemfile: the stack's Rack (from Debian) runs it on Puma."""
    return _without_gemfile(src, RACKUP, f"found config.ru and no Gemfile (nothing to install), served by the "
                                         f"stack's Rack and Puma (`{RACKUP}`)")


def _procfile_only(src: Path, start_command: str) -> Detection | None:
    """No Gemfile: the Procfile's command must run Ruby or name a .rb file of
    the app (`ruby server.rb`)."""
    named = RB_FILE.search(start_command)
    if not (named and is_file(src, named["name"])) and not (
            RUNS_RUBY.match(start_command.strip()) and (is_file(src, "config.ru") or any(
                p.is_file() and not p.is_symlink() for p in src.glob("*.rb")))):
        return None
    if "bundle exec" in start_command:
        return None  # Bundler needs a Gemfile
    return _without_gemfile(src, start_command, f"found no Gemfile (nothing to install) and a start command that "
                                                f"runs Ruby (`{start_command}`)")


def _without_gemfile(src: Path, start: str, reason: str) -> Detection:
    version, version_source = _ruby_version(src, "")
    plan = BuildPlan(
        stack="ruby",
        start_command=start,
        env={"RACK_ENV": "production"},
        language_version=version,
        sources={"language_version": version_source} if version else {},
        notes=("Hakobune found no Gemfile, so no gem is installed: the app has Ruby's standard library and the "
               "stack's Rack, Puma and WEBrick (from Debian). Add a Gemfile when it needs other gems.",),
    )
    if version:
        reason += f"; it asks for Ruby {version} ({version_source})"
    return Detection(stack="ruby", reason=reason, plan=plan)


def _ruby_version(src: Path, gemfile: str) -> tuple[str, str]:
    """The Ruby version the app asks for, and where it says so."""
    line = RUBY_LINE.search(gemfile)
    if line:
        specs = [spec.strip() for spec in QUOTED.findall(line["specs"])]
        if specs:
            return ", ".join(specs), "Gemfile"
    pinned = read_text(src, ".ruby-version").strip().splitlines()
    match = RUBY_VERSION_FILE.match(pinned[0].strip()) if pinned else None
    if match:
        return match["version"], ".ruby-version"
    return "", ""


def _files_the_gemfile_reads(src: Path, gemfile: str) -> list[str]:
    """Files Bundler reads beside the Gemfile: .ruby-version (`ruby file:`)
    and the gemspecs of `gemspec`."""
    names = []
    if re.search(r"^\s*ruby\s+file:", gemfile, re.MULTILINE) and is_file(src, ".ruby-version"):
        names.append(".ruby-version")
    if re.search(r"^\s*gemspec\b", gemfile, re.MULTILINE):
        names += sorted(p.name for p in src.glob("*.gemspec") if p.is_file() and not p.is_symlink())
    return names
