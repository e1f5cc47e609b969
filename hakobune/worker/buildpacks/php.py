"""PHP apps: composer.json (its packages installed with Composer, without the
development ones, the autoloader optimised; Composer's install scripts and a
classmap, which need the app's code, run after it is copied), or a plain folder with
index.php or public/index.php. Served by PHP-FPM behind lighttpd (the PHP
stack's `hakobune-php-server`, see worker/php_stack.py), from public/ when
the app has one, else from the app's folder; a Procfile's `web:` line
starts it instead (the stack runs Heroku's `heroku-php-apache2 public/` and
`heroku-php-nginx` as that server with that document root).

The PHP version: composer.json's `require.php` (a Composer constraint).

Packages come from Packagist; when the host sets COMPOSER_REPOSITORY (a
Packagist mirror), Composer takes them from there."""

from __future__ import annotations

import re
from pathlib import Path

from ._files import is_file, read_json
from .plan import BuildPlan, Detection

NAME = "PHP"
KEY = "php"
LOOKS_FOR = "composer.json, index.php or public/index.php"

SERVER = "hakobune-php-server"
# Heroku's PHP servers in a Procfile: `heroku-php-apache2 -C conf public/`.
HEROKU_SERVER = re.compile(r"^heroku-php-(?:apache2|nginx)(?P<options>(?:\s+-\w(?:\s+[^\s-]\S*)?)*)"
                           r"(?:\s+(?P<root>[\w./-]+))?\s*$")
DOCUMENT_ROOT_FOLDERS = ("public",)
# Packagist's packages from the host's mirror, when it sets one (package_sources.py).
USE_MIRROR = ('if [ -n "${COMPOSER_REPOSITORY:-}" ]; then composer config --global repos.packagist composer '
              '"$COMPOSER_REPOSITORY"; fi')
# The packages, and the autoloader: optimised for the packages' classes, the app's
# own found by their PSR-4 paths when asked for (the code is not copied yet).
INSTALL = (f"{USE_MIRROR} && composer install --no-dev --no-interaction --no-progress --no-scripts "
           "--optimize-autoloader --prefer-dist")
AUTOLOADER = "composer dump-autoload --no-dev --optimize --no-interaction"
# What needs the app's code, so runs after it is copied (a code change runs it again):
# the scripts Composer runs at install (Laravel's package discovery) and a classmap.
SCRIPTS_AFTER_CODE = ("post-install-cmd", "post-autoload-dump")
BUILD_ENV = {
    "COMPOSER_ALLOW_SUPERUSER": "1",
    "COMPOSER_HOME": "/tmp/composer",
    "COMPOSER_NO_INTERACTION": "1",
    # Composer's messages on one line each, however long (not wrapped at 80 columns).
    "COLUMNS": "300",
}


def detect(src: Path, *, start_command: str = "") -> Detection | None:
    composer = read_json(src, "composer.json") if is_file(src, "composer.json") else None
    has_composer = composer is not None
    entry = next((name for name in ("public/index.php", "index.php") if is_file(src, name)), None)
    if not has_composer and entry is None and not (start_command and _runs_php(src, start_command)):
        return None
    composer = composer or {}
    require = composer.get("require") if isinstance(composer.get("require"), dict) else {}
    packages = sorted(name for name in require if isinstance(name, str) and "/" in name)
    extensions = sorted(name for name in require if isinstance(name, str) and name.startswith("ext-"))
    php_version = require.get("php") if isinstance(require.get("php"), str) else ""
    locked = is_file(src, "composer.lock")

    root = next((folder for folder in DOCUMENT_ROOT_FOLDERS if is_file(src, f"{folder}/index.php")), "")
    env = {"SITE_ROOT": f"/app/{root}" if root else "/app"}
    sources = {"language_version": "composer.json require.php"} if php_version else {}
    notes = []
    install: tuple[str, ...] = ()
    build: tuple[str, ...] = ()
    dependency_files: tuple[str, ...] = ()
    autoload = composer.get("autoload") if isinstance(composer.get("autoload"), dict) else None
    scripts = composer.get("scripts") if isinstance(composer.get("scripts"), dict) else {}
    after_code = bool(set(SCRIPTS_AFTER_CODE) & set(scripts)) or bool(autoload and autoload.get("classmap"))
    if packages:
        install = (INSTALL,)
        dependency_files = ("composer.json", "composer.lock") if locked else ("composer.json",)
        if not locked:
            notes.append("Commit your composer.lock (run `composer update`) so every build installs the same package "
                         "versions; without it the build resolves them again.")
    elif autoload is not None and not after_code:
        install, dependency_files = (AUTOLOADER,), ("composer.json",)  # the app's own classes, nothing to download
    if after_code and (packages or autoload is not None):
        build = (AUTOLOADER,)
    if has_composer:
        missing = [name for name in extensions if name.removeprefix("ext-").lower() not in STACK_EXTENSIONS]
        if missing:
            notes.append(f"composer.json requires {', '.join(missing)}, which the PHP stack does not have (it has "
                         f"{', '.join(sorted(STACK_EXTENSIONS))}). Remove the requirement, or ask your operator for "
                         "a PHP stack that has it (STACK_PHP_IMAGE).")

    heroku = HEROKU_SERVER.match(start_command.strip()) if start_command else None
    if heroku:
        # The PHP stack has commands of these names, which serve the folder they are given.
        root = (heroku["root"] or "").strip("/").removeprefix("./")
        env["SITE_ROOT"] = f"/app/{root}" if root else "/app"
        how = (f"the Procfile's `{start_command}`, which the PHP stack runs as PHP-FPM behind lighttpd, serving "
               f"{root + '/' if root else 'the app folder'}")
        if heroku["options"].strip():
            notes.append(f"The options of `{start_command}` (server configuration files) are not used: Hakobune "
                         "serves the app with its own PHP-FPM and lighttpd settings.")
    elif start_command:
        how = f"the app's own start command (`{start_command}`)"
    else:
        how = f"PHP-FPM behind lighttpd, serving {root + '/' if root else 'the app folder'}"
    start = start_command or SERVER

    plan = BuildPlan(
        stack="php",
        dependency_files=dependency_files,
        install_commands=install,
        build_commands=build,
        start_command=start,
        env=env,
        build_env=dict(BUILD_ENV) if (install or build) else {},
        language_version=php_version,
        sources=sources,
        notes=tuple(notes),
    )
    if packages:
        what = (f"composer.json with {len(packages)} package{'s' if len(packages) != 1 else ''} "
                f"({'composer.lock' if locked else 'no composer.lock: versions are not pinned'}), installed with "
                "Composer")
    elif has_composer:
        only = ", ".join(["php"] * bool(php_version) + extensions) or "nothing"
        what = f"composer.json that requires only PHP and its extensions ({only}): nothing to install"
    else:
        what = f"{entry or 'PHP files'} and no composer.json (nothing to install)"
    reason = f"found {what}, served by {how}"
    if php_version:
        reason += f"; it asks for PHP {php_version} (composer.json)"
    return Detection(stack="php", reason=reason, plan=plan)


# The extensions the PHP stack has (stacks.RECIPES["php"]; `php -m`).
STACK_EXTENSIONS = frozenset({
    "bcmath", "calendar", "core", "ctype", "curl", "date", "dom", "exif", "ffi", "fileinfo", "filter", "ftp", "gd",
    "gettext", "hash", "iconv", "intl", "json", "libxml", "mbstring", "mysqli", "mysqlnd", "openssl", "pcntl", "pcre",
    "pdo", "pdo_mysql", "pdo_pgsql", "pdo_sqlite", "pgsql", "phar", "posix", "random", "readline", "reflection",
    "session", "shmop", "simplexml", "sockets", "sodium", "spl", "sqlite3", "standard", "sysvmsg", "sysvsem",
    "sysvshm", "tokenizer", "xml", "xmlreader", "xmlwriter", "xsl", "opcache", "zend-opcache", "zip", "zlib",
})


def _runs_php(src: Path, start_command: str) -> bool:
    """A Procfile command that runs PHP on a file of the app (`php -S 0.0.0.0:$PORT router.php`)."""
    words = start_command.split()
    return bool(words) and words[0] == "php" and any(w.endswith(".php") and is_file(src, w) for w in words[1:])
