"""The files of the PHP stack (stacks.RECIPES["php"]): PHP-FPM runs the
app's .php files, behind lighttpd, which serves everything else and speaks
HTTP on $PORT. Both come from Debian, run unprivileged, log to stdout and
stderr and write nothing outside /tmp (an instance's root filesystem is
read-only).

`hakobune-php-server` starts PHP-FPM, waits for its socket, then lighttpd;
when either of them stops, it stops the other and exits with its status, so
the runtime sees one process that serves or has stopped. PHP-FPM keeps
$WEB_CONCURRENCY (default 4) workers at most, started on demand: that many
requests run PHP at once, while lighttpd goes on serving files.

The document root is $SITE_ROOT (as on the static stack): the app's public/ when it has one
(Laravel, Symfony, Slim), else the app's folder. When it holds an index.php,
a request for a path that is not a file goes to index.php (a front
controller), as on other platforms."""

from __future__ import annotations

SERVER = "hakobune-php-server"
SERVER_PATH = f"/usr/local/bin/{SERVER}"
# Heroku's PHP servers, as Procfiles name them (`web: heroku-php-apache2 public/`).
HEROKU_SERVERS = ("heroku-php-apache2", "heroku-php-nginx")
LIGHTTPD_CONF_PATH = "/etc/lighttpd/hakobune-php.conf"
STATIC_CONF_PATH = "/etc/lighttpd/hakobune.conf"
# With an index.php in the document root: a path that is not a file (and does
# not end in /, which is a folder's index) goes to index.php.
FRONT_CONTROLLER = 'url.rewrite-if-not-file = ("^/[^?]*[^/?](\\?|$)" => "/index.php${url.path}${qsa}")'

FPM_CONF_PATH = "/etc/hakobune/php-fpm.conf"
FPM_SOCKET = "/tmp/php-fpm.sock"

# The static stack's settings (stacks.LIGHTTPD_CONF, at STATIC_CONF_PATH in this
# stack too: $SITE_ROOT on $PORT, logs, dot-files denied, .php never sent as a file),
# and .php files run in PHP-FPM.
LIGHTTPD_CONF = f"""\
# Hakobune PHP stack: serves $SITE_ROOT on 0.0.0.0:$PORT; .php files run in PHP-FPM.
include "{STATIC_CONF_PATH}"
server.modules += ("mod_rewrite", "mod_fastcgi")
index-file.names += ("index.php")
# When the document root is the app's folder, its dependencies and manifests are not served.
$HTTP["url"] =~ "^/(vendor|node_modules)/|^/(composer\\.(json|lock)|Procfile|hakobune\\.toml)$" {{ url.access-deny = ("") }}
fastcgi.server = (".php" => ((
  "socket" => "{FPM_SOCKET}",
  "check-local" => "enable",
  "broken-scriptfilename" => "enable",
)))
"""

FPM_CONF = f"""\
; Hakobune PHP stack: one pool of workers, started on demand, on a socket in /tmp.
[global]
pid = /tmp/php-fpm.pid
error_log = /proc/self/fd/2
log_limit = 8192
daemonize = no

[app]
listen = {FPM_SOCKET}
pm = ondemand
pm.max_children = ${{PHP_FPM_MAX_CHILDREN}}
pm.process_idle_timeout = 30s
pm.max_requests = 1000
; The app's environment (DATABASE_URL, its own variables) reaches PHP.
clear_env = no
catch_workers_output = yes
decorate_workers_output = no
php_admin_value[session.save_path] = /tmp
php_admin_value[upload_tmp_dir] = /tmp
php_admin_value[sys_temp_dir] = /tmp
"""

SERVER_SCRIPT = f"""\
#!/bin/bash
# Hakobune PHP stack: PHP-FPM, then lighttpd in front of it; when either stops,
# the other is stopped and this exits with its status.
set -u
export PORT="${{PORT:-8080}}" SITE_ROOT="${{SITE_ROOT:-/app}}"
export PHP_FPM_MAX_CHILDREN="${{WEB_CONCURRENCY:-4}}"
fpm=$(ls /usr/sbin/php-fpm* | head -n 1)
rm -f {FPM_SOCKET}
"$fpm" --nodaemonize --fpm-config {FPM_CONF_PATH} &
fpm_pid=$!
for _ in $(seq 100); do
  [ -S {FPM_SOCKET} ] && break
  kill -0 "$fpm_pid" 2>/dev/null || {{ wait "$fpm_pid"; exit $?; }}
  sleep 0.1
done
conf={LIGHTTPD_CONF_PATH}
if [ -f "$SITE_ROOT/index.php" ]; then
  conf=/tmp/lighttpd-php.conf
  printf '%s\\n' 'include "{LIGHTTPD_CONF_PATH}"' '{FRONT_CONTROLLER}' > "$conf"
fi
lighttpd -D -f "$conf" &
web_pid=$!
stopping=""
trap 'stopping=1; kill -TERM "$web_pid" "$fpm_pid" 2>/dev/null' TERM INT
wait -n "$fpm_pid" "$web_pid"
status=$?
kill -TERM "$web_pid" "$fpm_pid" 2>/dev/null
wait
[ -n "$stopping" ] && exit 0
exit "$status"
"""

HEROKU_SERVER_SCRIPT = f"""\
#!/bin/bash
# Heroku's PHP server commands, as a Procfile names them: the document root they
# are given, served by {SERVER}. Their options (Apache's or nginx's
# configuration, PHP-FPM's, a php.ini, logs to follow) are not used.
root=""
while [ $# -gt 0 ]; do
  case "$1" in
    -C|-F|-i|-l) shift 2 ;;
    -*) shift ;;
    *) root="$1"; shift ;;
  esac
done
if [ -n "$root" ]; then
  case "$root" in /*) ;; *) root="$PWD/$root" ;; esac
  export SITE_ROOT="${{root%/}}"
fi
exec {SERVER_PATH}
"""
