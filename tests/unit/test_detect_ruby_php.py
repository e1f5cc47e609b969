"""Ruby and PHP apps as an owner brings them: what each is detected as, why
(in words), the plan it is built with, the language version it asks for,
and what each detector says when it does not match."""

import json

import pytest

from hakobune.platform.diagnoses import diagnose
from hakobune.worker.builders.base import BuildError
from hakobune.worker.buildpacks import NoStackDetected, detect, php, ruby
from hakobune.worker.buildpacks.plan import BuildPlan
from hakobune.worker.buildpacks.versions import StackOffer, VersionUnavailable, fit_stack, satisfies
from hakobune.worker.stacks import RECIPES
from tests.conftest import APPS_DIR
from tests.unit.test_detect import tree

LOCK = "GEM\n  remote: https://rubygems.org/\n  specs:\n    rack (3.1.8)\n\nPLATFORMS\n  ruby\n\nDEPENDENCIES\n  rack\n"


# --- Ruby --------------------------------------------------------------------------------


def test_a_config_ru_alone_is_served_by_the_stacks_rack_and_puma():
    detection = detect(APPS_DIR / "ruby-rack")
    plan = detection.plan
    assert detection.stack == "ruby"
    assert plan.start_command == "rackup --port $PORT --host 0.0.0.0"
    assert plan.install_commands == () and plan.dependency_files == ()
    assert "found config.ru and no Gemfile (nothing to install), served by the stack's Rack and Puma" in detection.reason
    assert plan.language_version == "3.1" and plan.sources["language_version"] == ".ruby-version"


def test_a_procfile_that_runs_a_ruby_file_needs_no_gemfile():
    detection = detect(APPS_DIR / "ruby-webrick-procfile")
    assert detection.stack == "ruby"
    assert detection.plan.start_command == "ruby server.rb"
    assert "a start command that runs Ruby (`ruby server.rb`)" in detection.reason
    assert detection.plan.sources["start_command"] == "Procfile"


def test_a_gemfile_with_its_lock_is_installed_in_deployment_mode_outside_the_code(tmp_path):
    tree(tmp_path, {"Gemfile": 'source "https://rubygems.org"\ngem "rack"\ngem "puma"\n', "Gemfile.lock": LOCK,
                    "config.ru": "run ->(env) { [200, {}, ['hi']] }\n"})
    detection = detect(tmp_path)
    plan = detection.plan
    assert detection.stack == "ruby"
    assert plan.dependency_files == ("Gemfile", "Gemfile.lock")
    assert plan.install_commands[0].endswith("bundle install --jobs 4")
    assert plan.env["BUNDLE_DEPLOYMENT"] == "1" and plan.env["BUNDLE_PATH"] == "/opt/bundle"
    assert plan.env["BUNDLE_WITHOUT"] == "development:test"
    assert plan.start_command == "bundle exec puma --bind tcp://0.0.0.0:$PORT"
    assert "found a Gemfile with Gemfile.lock (Bundler, deployment mode), started with Puma" in detection.reason
    assert plan.notes == ()
    # The gems stay in their layer on a code-only change: the Dockerfile copies the code after them.
    dockerfile = plan.dockerfile("hakobune/stack-ruby:bookworm")
    assert dockerfile.index("bundle install") < dockerfile.index("COPY . .")


def test_a_gemfile_without_its_lock_or_puma_gets_advice(tmp_path):
    tree(tmp_path, {"Gemfile": 'source "https://rubygems.org"\ngem "sinatra"\n', "config.ru": "run Sinatra\n"})
    detection = detect(tmp_path)
    assert "BUNDLE_DEPLOYMENT" not in detection.plan.env
    assert "no Gemfile.lock (Bundler resolves the versions)" in detection.reason
    assert any("Commit your Gemfile.lock" in note for note in detection.plan.notes)
    assert any('Add `gem "puma"`' in note for note in detection.plan.notes)
    assert detection.plan.start_command == "bundle exec rackup --port $PORT --host 0.0.0.0"


def test_a_rails_app_runs_rails_server_precompiles_its_assets_and_migrates_in_the_release_phase(tmp_path):
    tree(tmp_path, {"Gemfile": 'source "https://rubygems.org"\ngem "rails", "~> 7.1"\ngem "propshaft"\ngem "pg"\n',
                    "Gemfile.lock": LOCK, "config.ru": "run Rails.application\n", "bin/rails": "",
                    "config/application.rb": "", "db/migrate/20240101000000_create_posts.rb": ""})
    detection = detect(tmp_path)
    plan = detection.plan
    assert plan.start_command == "bundle exec rails server --binding 0.0.0.0 --port $PORT"
    # Rails' tmp/ is the instance's /tmp: the rest of its files are read-only.
    assert plan.build_commands == ("SECRET_KEY_BASE_DUMMY=1 bundle exec rails assets:precompile",
                                   "rm -rf tmp && ln -s /tmp tmp")
    assert plan.release_command == "bundle exec rails db:migrate"
    assert plan.env["RAILS_ENV"] == "production" and plan.env["RAILS_LOG_TO_STDOUT"] == "1"
    assert "a Rails app, started with Rails' server" in detection.reason
    assert "its migrations run in the release phase" in detection.reason
    assert any("Rails needs SECRET_KEY_BASE when it runs: set it in the service's variables" in note
               for note in plan.notes)


def test_a_rails_app_of_debians_gems_installs_them_from_the_stack_and_migrates_in_the_release_phase():
    # The fixture's Gemfile names no gem source: its gems are Debian's, in the Ruby stack.
    detection = detect(APPS_DIR / "ruby-rails")
    plan = detection.plan
    assert detection.stack == "ruby"
    assert plan.install_commands == ("bundle install --local",)
    assert "BUNDLE_PATH" not in plan.env and "BUNDLE_DEPLOYMENT" not in plan.env, "the stack's gems are system-wide"
    assert plan.build_commands == ("SECRET_KEY_BASE_DUMMY=1 bundle exec rails assets:precompile",
                                   "rm -rf tmp && ln -s /tmp tmp")
    assert plan.release_command == "bundle exec rails db:migrate"
    assert detection.reason.startswith(
        "found a Gemfile with no gem source: its gems are the Ruby stack's own, Debian's packages "
        "(`bundle install --local`, nothing fetched), a Rails app, started with Rails' server")
    assert not any("Commit your Gemfile.lock" in note for note in plan.notes)


def test_a_sinatra_app_of_debians_gems_is_served_by_puma_from_the_stack():
    detection = detect(APPS_DIR / "ruby-sinatra")
    plan = detection.plan
    assert plan.install_commands == ("bundle install --local",)
    assert plan.start_command == "bundle exec puma --bind tcp://0.0.0.0:$PORT"
    assert plan.build_commands == () and plan.release_command == ""
    assert plan.env["RACK_ENV"] == "production" and "BUNDLE_PATH" not in plan.env


def test_a_gem_the_stack_lacks_is_named_with_what_to_change():
    # What Bundler 2.3 printed here for a Gemfile of no source asking for a gem the stack lacks.
    tail = [
        "[DEPRECATED] This Gemfile does not include an explicit global source. Not using an explicit global source "
        "may result in a different lockfile being generated depending on the gems you have installed locally before "
        "bundler is run. Instead, define a global source in your Gemfile like this: source \"https://rubygems.org\".",
        "Could not find gem 'sinatra (~> 9.0)' in locally installed gems.",
        "",
        "The source contains the following gems matching 'sinatra':",
        "  * sinatra-3.0.5",
        "The command '/bin/sh -c bundle install --local' returned a non-zero code: 7",
    ]
    diagnosis = diagnose(BuildError("Installing your app's dependencies failed", log_tail=tail))
    assert diagnosis.rule == "build.gem_not_in_stack"
    assert diagnosis.in_english() == (
        "The Gemfile names no gem source, so its gems come from the Ruby stack (Debian's packages), and the stack has "
        "no sinatra (~> 9.0). Add `source \"https://rubygems.org\"` at the top of the Gemfile to install the gems from "
        "there (or from the mirror this host uses), or ask for a version the stack has.")
    assert diagnose(BuildError("failed", log_tail=["Could not find gem 'rack' in rubygems repository"])).rule \
        == "build.failed"


def test_a_locked_gemfile_of_the_stacks_gems_is_frozen_not_deployed(tmp_path):
    tree(tmp_path, {"Gemfile": 'gem "sinatra"\ngem "puma"\n', "Gemfile.lock": LOCK, "config.ru": "run Sinatra\n"})
    plan = detect(tmp_path).plan
    assert plan.install_commands == ("bundle install --local",)
    assert plan.env["BUNDLE_FROZEN"] == "1" and "BUNDLE_DEPLOYMENT" not in plan.env


def test_a_rails_apps_procfile_starts_it_and_says_its_release_phase(tmp_path):
    tree(tmp_path, {"Gemfile": 'gem "rails"\n', "Gemfile.lock": LOCK, "db/migrate/1_a.rb": "",
                    "Procfile": "web: bundle exec puma -C config/puma.rb\n"})
    plan = detect(tmp_path).plan
    assert plan.start_command == "bundle exec puma -C config/puma.rb"
    assert plan.release_command == "", "the Procfile has no release line"


@pytest.mark.parametrize("gemfile, version_file, asked, source", [
    ('ruby "3.1.2"\n', None, "3.1.2", "Gemfile"),
    ("ruby '~> 3.1'\n", "3.3.0", "~> 3.1", "Gemfile"),
    ('ruby ">= 3.0", "< 3.4"\n', None, ">= 3.0, < 3.4", "Gemfile"),
    ('ruby file: ".ruby-version"\n', "ruby-3.1.4\n", "3.1", ".ruby-version"),
    ("", "3.2.2\n", "3.2", ".ruby-version"),
])
def test_the_ruby_version_the_app_asks_for(tmp_path, gemfile, version_file, asked, source):
    files = {"Gemfile": f'source "https://rubygems.org"\n{gemfile}gem "rack"\n', "config.ru": "run App\n"}
    if version_file:
        files[".ruby-version"] = version_file
    tree(tmp_path, files)
    detection = detect(tmp_path)
    assert (detection.plan.language_version, detection.plan.sources["language_version"]) == (asked, source)
    assert f"it asks for Ruby {asked} ({source})" in detection.reason
    if "file:" in gemfile:
        assert ".ruby-version" in detection.plan.dependency_files, "Bundler reads it"


def test_a_ruby_the_stacks_lack_is_refused_naming_the_versions_they_have(tmp_path):
    tree(tmp_path, {"config.ru": "run App\n", ".ruby-version": "3.4.1\n"})
    offers = [StackOffer("ruby", "", "3.1.2", "hakobune/stack-ruby:bookworm")]
    with pytest.raises(VersionUnavailable) as refused:
        fit_stack(detect(tmp_path).plan, lambda language: offers)
    assert str(refused.value).startswith("The app asks for Ruby 3.4 (.ruby-version), but the stacks here have "
                                         "Ruby 3.1.2 (hakobune/stack-ruby:bookworm).")
    trixie = offers + [StackOffer("ruby", "trixie", "3.3.8", "hakobune/stack-ruby:trixie")]
    tree(tmp_path, {".ruby-version": "3.3\n"})
    plan, chosen = fit_stack(detect(tmp_path).plan, lambda language: trixie)
    assert plan.stack_variant == "trixie"
    assert chosen == "Ruby 3.3 is asked for: built on hakobune/stack-ruby:trixie (Ruby 3.3.8)"


def test_ruby_says_what_it_looks_for_when_nothing_matches(tmp_path):
    # A library's Ruby files, a lockfile without its Gemfile, and a Procfile that runs no Ruby.
    tree(tmp_path, {"lib/greeting.rb": "module Greeting; end\n", "Gemfile.lock": LOCK})
    assert ruby.detect(tmp_path) is None
    assert ruby.detect(tmp_path, start_command="./bin/serve") is None
    assert ruby.detect(tmp_path, start_command="bundle exec ruby lib/greeting.rb") is None, "Bundler needs a Gemfile"
    with pytest.raises(NoStackDetected) as excinfo:
        detect(tmp_path)
    assert f"{ruby.NAME}: {ruby.LOOKS_FOR}" in str(excinfo.value)
    assert "a Gemfile (installed with Bundler)" in ruby.LOOKS_FOR and "config.ru alone" in ruby.LOOKS_FOR


def test_a_gemfile_with_nothing_to_start_is_not_a_ruby_app(tmp_path):
    tree(tmp_path, {"Gemfile": 'gem "rake"\n', "Rakefile": ""})
    assert ruby.detect(tmp_path) is None


# --- PHP ---------------------------------------------------------------------------------


def test_a_composer_json_of_php_and_extensions_only_installs_nothing_and_serves_public():
    detection = detect(APPS_DIR / "php-hello")
    plan = detection.plan
    assert detection.stack == "php"
    assert plan.install_commands == ("composer dump-autoload --no-dev --optimize --no-interaction",), \
        "its own classes are autoloaded, by their PSR-4 paths: nothing to run again when the code changes"
    assert plan.dependency_files == ("composer.json",) and plan.build_commands == ()
    assert plan.start_command == "hakobune-php-server"
    assert plan.env["SITE_ROOT"] == "/app/public"
    assert ("found composer.json that requires only PHP and its extensions (php, ext-mbstring, ext-pdo_sqlite): "
            "nothing to install, served by PHP-FPM behind lighttpd, serving public/") in detection.reason
    assert plan.language_version == ">=8.1" and plan.sources["language_version"] == "composer.json require.php"


def test_a_plain_folder_of_php_is_served_from_the_folder():
    detection = detect(APPS_DIR / "php-plain")
    assert detection.stack == "php"
    assert detection.plan.env["SITE_ROOT"] == "/app"
    assert detection.reason == ("found index.php and no composer.json (nothing to install), served by PHP-FPM behind "
                                "lighttpd, serving the app folder")


def test_composer_packages_and_the_autoloader_are_made_before_the_code(tmp_path):
    tree(tmp_path, {"composer.json": json.dumps({"require": {"php": "^8.2", "slim/slim": "^4.14"},
                                                 "autoload": {"psr-4": {"App\\": "src/"}}}),
                    "composer.lock": "{}", "public/index.php": "<?php\n"})
    detection = detect(tmp_path)
    plan = detection.plan
    assert plan.dependency_files == ("composer.json", "composer.lock")
    assert plan.install_commands[0].endswith("composer install --no-dev --no-interaction --no-progress --no-scripts "
                                             "--optimize-autoloader --prefer-dist")
    assert plan.build_commands == (), "a code change reuses the packages and their autoloader"
    assert plan.build_env["COMPOSER_ALLOW_SUPERUSER"] == "1"
    assert "found composer.json with 1 package (composer.lock), installed with Composer" in detection.reason
    dockerfile = plan.dockerfile("hakobune/stack-php:bookworm")
    assert dockerfile.index("composer install") < dockerfile.index("COPY . .")


@pytest.mark.parametrize("composer", [
    {"require": {"laravel/framework": "^11.0"}, "scripts": {"post-autoload-dump": ["@php artisan package:discover"]}},
    {"require": {"slim/slim": "^4.14"}, "autoload": {"classmap": ["database/"]}},
    {"autoload": {"classmap": ["lib/"]}},
])
def test_composer_scripts_and_a_classmap_run_after_the_code(tmp_path, composer):
    tree(tmp_path, {"composer.json": json.dumps(composer), "composer.lock": "{}", "public/index.php": "<?php\n"})
    plan = detect(tmp_path).plan
    assert plan.build_commands == ("composer dump-autoload --no-dev --optimize --no-interaction",)
    dockerfile = plan.dockerfile("hakobune/stack-php:bookworm")
    assert dockerfile.index("COPY . .") < dockerfile.index("dump-autoload")


def test_a_composer_json_without_its_lock_gets_advice(tmp_path):
    tree(tmp_path, {"composer.json": json.dumps({"require": {"monolog/monolog": "^3.0"}}), "index.php": "<?php\n"})
    detection = detect(tmp_path)
    assert detection.plan.dependency_files == ("composer.json",)
    assert any("Commit your composer.lock" in note for note in detection.plan.notes)


def test_an_extension_the_stack_lacks_is_named(tmp_path):
    tree(tmp_path, {"composer.json": json.dumps({"require": {"ext-mongodb": "*", "ext-intl": "*"}}),
                    "index.php": "<?php\n"})
    notes = detect(tmp_path).plan.notes
    assert any(note.startswith("composer.json requires ext-mongodb, which the PHP stack does not have")
               for note in notes), notes


@pytest.mark.parametrize("command, root", [
    ("heroku-php-apache2 public/", "/app/public"),
    ("heroku-php-nginx -C nginx.conf web/", "/app/web"),
    ("heroku-php-apache2", "/app"),
])
def test_herokus_php_servers_in_a_procfile_are_read_as_the_stacks_server(tmp_path, command, root):
    tree(tmp_path, {"composer.json": "{}", "web/index.php": "<?php\n", "Procfile": f"web: {command}\n"})
    detection = detect(tmp_path)
    assert detection.plan.start_command == command, "the PHP stack has a command of that name"
    assert detection.plan.env["SITE_ROOT"] == root
    assert f"the Procfile's `{command}`, which the PHP stack runs as PHP-FPM behind lighttpd" in detection.reason


def test_a_procfile_of_phps_own_server_is_followed(tmp_path):
    tree(tmp_path, {"router.php": "<?php\n", "Procfile": "web: php -S 0.0.0.0:$PORT router.php\n"})
    detection = detect(tmp_path)
    assert detection.stack == "php" and detection.plan.start_command == "php -S 0.0.0.0:$PORT router.php"


@pytest.mark.parametrize("asked, have, expected", [
    (">=8.1", "8.2.32", True),
    ("^8.3", "8.2.32", False),
    ("~8.2", "8.4.11", True),  # Composer's tilde: >= 8.2, < 9
    ("~8.2.1", "8.3.0", False),
    ("8.2.*", "8.2.32", True),
    (">=8.1 <8.2", "8.2.32", False),
    ("^7.4 || ^8.0", "8.2.32", True),
    ("^7.4|^8.0", "8.2.32", True),
    ("8.1 - 8.3", "8.2.32", True),
    ("^7.4", "8.2.32", False),
])
def test_composers_php_constraints(asked, have, expected):
    assert satisfies("php", asked, have) is expected


@pytest.mark.parametrize("asked, have, expected", [
    ("~> 3.1", "3.3.8", True),
    ("~> 3.1.0", "3.3.8", False),
    ("~> 3.1.0", "3.1.2", True),
    ("3.1.2", "3.1.2", True),
    ("3.1.4", "3.1.2", False),  # Bundler holds the Gemfile to that release
    ("3.1", "3.1.2", True),
    (">= 3.0, < 3.2", "3.1.2", True),
    (">= 3.2", "3.1.2", False),
])
def test_rubygems_ruby_requirements(asked, have, expected):
    assert satisfies("ruby", asked, have) is expected


def test_a_php_the_stacks_lack_is_refused_at_detection(tmp_path):
    tree(tmp_path, {"composer.json": json.dumps({"require": {"php": "^8.4"}}), "index.php": "<?php\n"})
    offers = [StackOffer("php", "", "8.2.32", "hakobune/stack-php:bookworm")]
    with pytest.raises(VersionUnavailable) as refused:
        fit_stack(detect(tmp_path).plan, lambda language: offers)
    assert "The app asks for PHP ^8.4 (composer.json require.php), but the stacks here have PHP 8.2.32" \
        in str(refused.value)


def test_php_says_what_it_looks_for_when_nothing_matches(tmp_path):
    # Templates of another language, and a Procfile that names no PHP file of the app.
    tree(tmp_path, {"templates/page.php.twig": "", "lib/util.php": "<?php\n"})
    assert php.detect(tmp_path) is None
    assert php.detect(tmp_path, start_command="php -S 0.0.0.0:$PORT missing.php") is None
    with pytest.raises(NoStackDetected) as excinfo:
        detect(tmp_path)
    assert f"{php.NAME}: {php.LOOKS_FOR}" in str(excinfo.value)


def test_hakobune_toml_can_name_the_ruby_and_php_stacks(tmp_path):
    tree(tmp_path, {"hakobune.toml": 'stack = "php"\n', "index.php": "<?php\n", "index.html": ""})
    assert detect(tmp_path).stack == "php"


def test_a_ruby_or_php_plan_round_trips_as_stored(tmp_path):
    for app in ("ruby-rack", "php-hello"):
        plan = detect(APPS_DIR / app).plan
        assert BuildPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_the_ruby_stack_has_debians_rails_and_sinatra_and_trixie_its_rackup():
    recipe = RECIPES["ruby"]
    assert {"ruby-rails", "ruby-pg", "ruby-sqlite3", "ruby-sinatra", "puma", "ruby-rack"} <= set(recipe.apt_packages)
    # Rack 3 (trixie) moved rackup to a package of its own; bookworm's Rack 2 has it.
    assert "ruby-rackup" in recipe.apt_packages_for("trixie")
    assert "ruby-rackup" not in recipe.apt_packages_for("bookworm")
