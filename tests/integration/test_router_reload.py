"""Every deploy switches its service's route, and Caddy switches a route by
reloading its config. Under traffic that reload must lose no request: the host
set up by `make` (scripts/install-deps.sh) lets the kernel hand connections
waiting on Caddy's old socket to its new one (net.ipv4.tcp_migrate_req)."""

import pytest

from tests.support.reload_race import MIGRATE, run_reload_race


def test_route_switches_under_traffic_lose_no_request():
    if not MIGRATE.exists():
        pytest.skip("this kernel (before Linux 5.14) cannot hand waiting connections to a reloaded Caddy")
    assert MIGRATE.read_text().strip() == "1", "run `make test`: scripts/install-deps.sh sets net.ipv4.tcp_migrate_req"

    result = run_reload_race(switches=100, clients=8)

    assert result.ok > 300
    assert result.failures == []
