"""What happens to the host under a platform: the Docker Engine restarted,
the firewall emptied (a reboot). Only ever done by tests that skip unless
HAKOBUNE_TEST_RESTART_DOCKERD=1: every other user of this dockerd is hit too."""

import os
import subprocess
import time
from pathlib import Path

from hakobune.runtime.firewall import FORWARD_CHAIN, INPUT_CHAIN


def may_restart_dockerd() -> bool:
    return os.environ.get("HAKOBUNE_TEST_RESTART_DOCKERD") == "1"


def restart_dockerd() -> None:
    """Stops dockerd and starts it again with the command line it had."""
    pid = int(subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, check=True).stdout.split()[0])
    command = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    os.kill(pid, 15)
    for _ in range(300):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    log = open(os.environ.get("HAKOBUNE_DATA_DIR", "/tmp") + "/dockerd-restarted.log", "ab")
    subprocess.Popen([part.decode() for part in command], stdout=log, stderr=log, start_new_session=True)
    for _ in range(300):
        if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError("dockerd did not come back")


def flush_firewall_chains() -> None:
    """Empties Hakobune's own iptables chains, as a reboot leaves them."""
    for chain in (INPUT_CHAIN, FORWARD_CHAIN):
        subprocess.run(["iptables", "-w", "-F", chain], capture_output=True)
