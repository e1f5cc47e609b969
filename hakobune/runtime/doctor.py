"""The deploy doctor's reading of a failed start: from what the runtime saw
(an exit code, whether the kernel killed it for memory, the app's last lines,
the sockets it listens on) it picks the diagnosis a beginner can act on, as
a rule id with parameters (platform/diagnoses.py puts them into words).

No Docker and no Django here: each backend passes what it saw, so every rule
is a plain function a unit test can call."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .base import RuntimeBackendError

# Memory sizes a service can be given, smallest first: the next one up from
# what ran out is the size the doctor suggests.
MEMORY_SIZES_MB = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)

# A module a Python app imports whose package is named otherwise on PyPI.
PYTHON_PACKAGES = {
    "yaml": "PyYAML", "PIL": "Pillow", "cv2": "opencv-python", "sklearn": "scikit-learn",
    "bs4": "beautifulsoup4", "dotenv": "python-dotenv", "jwt": "PyJWT", "psycopg2": "psycopg2-binary",
    "dateutil": "python-dateutil", "MySQLdb": "mysqlclient", "magic": "python-magic", "google": "the Google library",
    "dj_database_url": "dj-database-url", "rest_framework": "djangorestframework", "multipart": "python-multipart",
}

_PYTHON_MISSING = re.compile(r"(?:ModuleNotFoundError|ImportError): No module named '?([\w.]+)'?")
_NODE_MISSING = re.compile(r"Error: Cannot find module '([^']+)'")
_RUBY_MISSING = re.compile(r"cannot load such file -- ([\w/.-]+)")
_SQLITE = re.compile(
    r"(?:sqlite3\.)?OperationalError: (unable to open database file|attempt to write a readonly database|"
    r"readonly database)|SQLITE_(?:CANTOPEN|READONLY)"
)
_DISALLOWED_HOST = re.compile(r"DisallowedHost|Invalid HTTP_HOST header")
_ERROR_LINE = re.compile(
    r"^\s*([A-Za-z_][\w.]*(Error|Exception|Exit)|[A-Za-z_][\w.]*\.exceptions\.\w+|Error|error|fatal|panic)\b.*"
)

LOOPBACK = "loopback"


class DoctorFinding(RuntimeBackendError):
    """A failed start the doctor has read: the app's fault, with its rule."""

    def __init__(self, rule: str, params: dict, message: str, *, log_tail: list[str] | None = None):
        super().__init__(message, permanent=True, log_tail=log_tail)
        self.rule = rule
        self.params = params


@dataclass(frozen=True)
class Socket:
    address: str  # "127.0.0.1", "::", "0.0.0.0"
    port: int

    @property
    def reachable_from_outside(self) -> bool:
        return not ipaddress.ip_address(self.address).is_loopback


def next_memory_size(memory_mb: int) -> int:
    """The size to give a process that ran out of `memory_mb` MiB."""
    for size in MEMORY_SIZES_MB:
        if size > memory_mb:
            return size
    return memory_mb * 2


def last_error_line(lines: list[str]) -> str:
    """The line that names the error, like "SyntaxError: expected ':'"."""
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line.strip()[:300]
    return ""


def last_line(lines: list[str]) -> str:
    for line in reversed(lines):
        if line.strip():
            return line.strip()[:300]
    return ""


# -- the sockets a container listens on (its /proc/net/tcp and tcp6) -----------------------

def _address4(hex_address: str) -> str:
    return str(ipaddress.IPv4Address(bytes(reversed(bytes.fromhex(hex_address)))))


def _address6(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    # Four 32-bit words, each in the host's (little-endian) order.
    ordered = b"".join(bytes(reversed(raw[i:i + 4])) for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(ordered)
    return str(address.ipv4_mapped or address)


def listening_sockets(proc_net_text: str) -> list[Socket]:
    """The listening TCP sockets in the text of /proc/net/tcp and/or
    /proc/net/tcp6 (state 0A), in the order found, without repeats."""
    found: list[Socket] = []
    for line in proc_net_text.splitlines():
        parts = line.split()
        if len(parts) < 4 or ":" not in parts[1] or parts[3] != "0A":
            continue
        hex_address, _, hex_port = parts[1].rpartition(":")
        try:
            address = _address4(hex_address) if len(hex_address) == 8 else _address6(hex_address)
            socket = Socket(address, int(hex_port, 16))
        except ValueError:
            continue
        if socket not in found:
            found.append(socket)
    return found


# -- the diagnoses ---------------------------------------------------------------------------

def missing_module(lines: list[str]) -> dict | None:
    """The module the app failed to import and the file its package belongs in."""
    for line in reversed(lines):
        match = _PYTHON_MISSING.search(line)
        if match:
            module = match.group(1).split(".")[0]
            return {"module": module, "package": PYTHON_PACKAGES.get(module, module), "file": "requirements.txt",
                    "error": line.strip()[:300]}
        match = _NODE_MISSING.search(line)
        if match and not match.group(1).startswith((".", "/")):
            name = match.group(1)
            package = "/".join(name.split("/")[:2]) if name.startswith("@") else name.split("/")[0]
            return {"module": name, "package": package, "file": "package.json", "error": line.strip()[:300]}
        match = _RUBY_MISSING.search(line)
        if match:
            return {"module": match.group(1), "package": match.group(1).split("/")[0], "file": "Gemfile",
                    "error": line.strip()[:300]}
    return None


def sqlite_unwritable(lines: list[str]) -> dict | None:
    for line in reversed(lines):
        if _SQLITE.search(line):
            return {"error": line.strip()[:300]}
    return None


def stopped_at_start(*, process: str, exit_code, oom_killed: bool, memory_mb: int, tail: list[str]) -> DoctorFinding:
    """A process that exited while starting: out of memory, a module missing
    at import, a SQLite file it could not write, or its own error."""
    # 137 is SIGKILL: at start, with nothing else stopping it, the kernel's out-of-memory killer
    # (the engine's flag misses a kill of a child of the start command's shell).
    if oom_killed or (exit_code == 137 and memory_mb):
        params = {"process": process, "memory": memory_mb, "suggested": next_memory_size(memory_mb)}
        return DoctorFinding("runtime.out_of_memory", params,
                             f"the {process} process ran out of memory while starting ({memory_mb} MiB) and was "
                             f"stopped; give it {params['suggested']} MiB", log_tail=tail)
    missing = missing_module(tail)
    if missing:
        params = {"process": process, "code": exit_code, **missing}
        return DoctorFinding("runtime.module_missing", params,
                             f"the {process} process stopped while starting: it imports {missing['module']}, which is "
                             f"not installed; add {missing['package']} to {missing['file']}", log_tail=tail)
    sqlite = sqlite_unwritable(tail)
    if sqlite:
        return DoctorFinding("runtime.sqlite_unwritable_unnamed", sqlite,
                             f"the app could not write its SQLite database: {sqlite['error']}", log_tail=tail)
    error = last_error_line(tail) or last_line(tail)
    params = {"process": process, "code": exit_code, "error": error}
    rule = "runtime.exited_at_start" if error else "runtime.exited_at_start_silent"
    return DoctorFinding(rule, params,
                         f"the {process} process stopped while starting, with exit code {exit_code}"
                         + (f": {error}" if error else " and printed nothing"), log_tail=tail)


def unhealthy(*, status: int, path: str, port: int, seconds: float, tail: list[str]) -> DoctorFinding:
    """An app that listens but answers its health check with an error status."""
    sqlite = sqlite_unwritable(tail)
    if sqlite:
        return DoctorFinding("runtime.sqlite_unwritable_unnamed", {"status": status, **sqlite},
                             f"the app answered HTTP {status}: it could not write its SQLite database: "
                             f"{sqlite['error']}", log_tail=tail)
    missing = missing_module(tail)
    if missing:
        params = {"process": "web", "code": status, **missing}
        return DoctorFinding("runtime.module_missing", params,
                             f"the app answered HTTP {status}: it imports {missing['module']}, which is not "
                             f"installed; add {missing['package']} to {missing['file']}", log_tail=tail)
    error = last_error_line(tail)
    params = {"status": status, "path": path or "/", "port": port, "seconds": f"{seconds:.0f}", "error": error}
    return DoctorFinding(
        "runtime.health_check_status" if error else "runtime.health_check_status_silent", params,
        f"the app answered its health check ({params['path']} on port {port}) with HTTP {status} for "
        f"{params['seconds']} s" + (f": {error}" if error else ""), log_tail=tail,
    )


def no_answer(*, port: int, seconds: float, sockets: list[Socket] | None, tail: list[str]) -> DoctorFinding:
    """An app that runs but never answered HTTP on $PORT, by what it does listen on
    (`sockets`; None when they could not be read)."""
    base = {"expected": port, "seconds": f"{seconds:.0f}"}
    if sockets is None:
        return DoctorFinding("runtime.no_answer", base,
                             f"the app did not answer HTTP on port {port} ($PORT) within {seconds:.0f} s; make sure it "
                             "listens on 0.0.0.0 and the port given in $PORT", log_tail=tail)
    on_port = [s for s in sockets if s.port == port]
    if on_port and all(not s.reachable_from_outside for s in on_port):
        found = on_port[0]
        return DoctorFinding("runtime.listens_on_loopback", {**base, "address": found.address, "port": found.port},
                             f"the app listens on {found.address} port {found.port}, an address only the container "
                             "itself can reach; make it listen on 0.0.0.0", log_tail=tail)
    others = [s for s in sockets if s.port != port]
    if others and not on_port:
        found = next((s for s in others if s.reachable_from_outside), others[0])
        rule = "runtime.listens_on_other_port" if found.reachable_from_outside else "runtime.listens_on_other_port_loopback"
        return DoctorFinding(rule, {**base, "address": found.address, "port": found.port},
                             f"the app listens on {found.address} port {found.port}, not on port {port} ($PORT); make "
                             "it listen on 0.0.0.0 and the port in $PORT", log_tail=tail)
    if not sockets:
        return DoctorFinding("runtime.listens_nowhere", base,
                             f"the app runs but listens on no port (Hakobune waited {seconds:.0f} s for port {port}, "
                             "$PORT)", log_tail=tail)
    # It listens on $PORT from outside, but never answered HTTP there.
    return DoctorFinding("runtime.no_http", base,
                         f"the app listens on port {port} but did not answer HTTP there within {seconds:.0f} s",
                         log_tail=tail)


def host_refused(*, host: str, tail: list[str]) -> DoctorFinding | None:
    """An app that answers 400 to its own address because its framework lets
    only listed host names in (Django's ALLOWED_HOSTS); None otherwise."""
    for line in reversed(tail):
        if _DISALLOWED_HOST.search(line):
            return DoctorFinding("runtime.host_not_allowed", {"host": host, "error": line.strip()[:300]},
                                 f"the app refused its own address, {host}: add it to ALLOWED_HOSTS", log_tail=tail)
    return None


def out_of_memory_running(killed: list[tuple[str, int]]) -> dict:
    """The diagnosis (as ServiceStatus fields) of live instances the kernel
    killed for memory: (process type, memory limit in bytes) of each; {} when
    none was."""
    if not killed:
        return {}
    process, limit = killed[0]
    memory = limit // (1024 * 1024)
    params = {"process": process, "kills": len(killed), "memory": memory, "suggested": next_memory_size(memory)}
    return {"rule": "runtime.out_of_memory_running", "params": params}
