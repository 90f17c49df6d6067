"""scripts/ensure-services.sh against a fake machine: a PATH of stub commands (apt-get, redis-*, pg_*, psql,
chromium) whose state lives in files, so every branch runs here without touching the real Redis and
PostgreSQL this machine already runs (those are exercised by every service test)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ensure-services.sh"
BASH = shutil.which("bash") or "/bin/bash"
TOOLS = ("sed", "grep", "cat", "mkdir", "seq", "sleep", "basename", "dirname", "cp", "rm", "touch", "id")

STUBS = {
    # apt-get copies the package's commands onto the PATH, unless the state says apt fails
    "apt-get": r"""
echo "apt-get $*" >> "$STATE/calls"
[ "$1" = update ] && exit 0
[ -e "$STATE/apt_fails_$4" ] && exit 100
case "$4" in
  redis-server) cp "$STATE/pkg/redis-server" "$STATE/pkg/redis-cli" "$STATE/bin/" ;;
  postgresql) cp "$STATE/pkg/pg_ctlcluster" "$STATE/pkg/pg_isready" "$STATE/pkg/psql" "$STATE/bin/"
              mkdir -p "$STATE/etc/16/main"; echo "local all all peer" > "$STATE/etc/16/main/pg_hba.conf" ;;
  chromium) cp "$STATE/pkg/chromium" "$STATE/bin/" ;;
esac
""",
    "redis-server": r"""
echo "redis-server $*" >> "$STATE/calls"
[ -e "$STATE/redis_mute" ] || touch "$STATE/redis_up"
""",
    "redis-cli": r"""[ -e "$STATE/redis_up" ] && echo PONG && exit 0; exit 1""",
    "pg_isready": r"""[ -e "$STATE/pg_up" ]""",
    "pg_ctlcluster": r"""
echo "pg_ctlcluster $*" >> "$STATE/calls"
case "$4" in
  start) touch "$STATE/pg_up" ;;
  reload) grep -q "^host all postgres 127.0.0.1/32 trust" "$STATE/etc/$2/main/pg_hba.conf" \
            && touch "$STATE/pg_trust" ;;
esac
exit 0
""",
    "psql": r"""[ -e "$STATE/pg_up" ] && [ -e "$STATE/pg_trust" ] && echo 1 && exit 0
echo "psql: error: fe_sendauth: no password supplied" >&2; exit 2""",
    "chromium": "exit 0",
    "sudo": 'exec "$@"',
}


@dataclass
class Machine:
    state: Path

    def has(self, *commands: str) -> None:
        for command in commands:
            shutil.copy(self.state / "pkg" / command, self.state / "bin" / command)

    def flag(self, *names: str) -> None:
        for name in names:
            (self.state / name).touch()

    def calls(self) -> list[str]:
        path = self.state / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def run(self) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": str(self.state / "bin"),
            "STATE": str(self.state),
            "MCS_PG_CONF_ROOT": str(self.state / "etc"),
            "MCS_WAIT_TENTHS": "3",
        }
        return subprocess.run(
            [BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
        )


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    (tmp_path / "bin").mkdir()
    (tmp_path / "pkg").mkdir()
    for tool in TOOLS:
        os.symlink(shutil.which(tool) or f"/bin/{tool}", tmp_path / "bin" / tool)
    for name, body in STUBS.items():
        stub = tmp_path / "pkg" / name
        stub.write_text(f"#!{BASH}\n{body}\n")
        stub.chmod(0o755)
    fake = Machine(tmp_path)
    fake.has("apt-get", "sudo")
    return fake


def test_a_fresh_machine_gets_both_services_installed_started_and_passwordless(machine: Machine) -> None:
    result = machine.run()
    assert result.returncode == 0, result.stderr
    calls = machine.calls()
    installed = [c.split()[-1] for c in calls if c.startswith("apt-get install")]
    assert installed == ["redis-server", "postgresql", "chromium"]
    assert any(c.startswith("redis-server --daemonize yes --bind 127.0.0.1") for c in calls)
    assert "pg_ctlcluster --skip-systemctl-redirect 16 main start" in calls
    assert "pg_ctlcluster --skip-systemctl-redirect 16 main reload" in calls
    hba = (machine.state / "etc" / "16" / "main" / "pg_hba.conf").read_text().splitlines()
    assert hba[0].startswith("host all postgres 127.0.0.1/32 trust")  # first: pg_hba's first match wins
    assert hba[1].startswith("host all postgres ::1/128 trust") and hba[2] == "local all all peer"
    assert "ready" in result.stdout


def test_running_services_are_left_alone(machine: Machine) -> None:
    machine.has("redis-server", "redis-cli", "pg_ctlcluster", "pg_isready", "psql", "chromium")
    (machine.state / "etc" / "16" / "main").mkdir(parents=True)
    machine.flag("redis_up", "pg_up", "pg_trust")
    result = machine.run()
    assert result.returncode == 0, result.stderr
    assert machine.calls() == []  # nothing installed, started or reconfigured


def test_a_package_that_cannot_be_installed_fails_loudly(machine: Machine) -> None:
    machine.has("redis-server", "redis-cli")
    machine.flag("redis_up", "apt_fails_postgresql")
    result = machine.run()
    assert result.returncode != 0
    assert "FAILED: apt-get could not install postgresql" in result.stderr


def test_a_service_that_never_answers_fails_loudly(machine: Machine) -> None:
    machine.has("redis-server", "redis-cli")
    machine.flag("redis_mute")
    result = machine.run()
    assert result.returncode != 0
    assert "FAILED: redis on 127.0.0.1:6379 did not answer within" in result.stderr


def test_without_apt_get_a_missing_service_is_named(machine: Machine) -> None:
    (machine.state / "bin" / "apt-get").unlink()
    result = machine.run()
    assert result.returncode != 0
    assert "redis-server is missing and there is no apt-get to install it" in result.stderr
