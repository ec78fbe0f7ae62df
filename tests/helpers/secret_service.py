"""A private, unlocked Secret Service (gnome-keyring) on a private D-Bus session bus.

    with secret_service(tmp_path / "ss") as ss:
        env = {**env, **ss.env}          # DBUS_SESSION_BUS_ADDRESS (+ XDG_RUNTIME_DIR)
        ... real uv / credproxy read and write the OS keyring ...
        ss.items()                       # [{"service": ..., "username": ..., ...}, ...] (no secrets)

This is what a Linux desktop gives uv's native store and Python's keyring. The bus is started
with its own configuration file, which names no service directory: nothing is D-Bus-activated
behind our back (the system's `org.freedesktop.secrets.service` would otherwise start a second
gnome-keyring the test does not own). Both processes are started here, bounded in time, and
stopped by process id (SIGTERM, then SIGKILL); `die_with_parent` stops them if pytest dies.

gnome-keyring-daemon and dbus-daemon are system packages, not pip ones. Missing, the fixture
skips with the apt command that installs them; with CREDPROXY_REQUIRE_SYSTEM_TOOLS=1 (.ci/run
exports it) it fails instead, so a CI machine that lost them never turns green by skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers.servers import die_with_parent, stop_pid

TOOLS = ("dbus-daemon", "gnome-keyring-daemon")
INSTALL = "apt-get install -y --no-install-recommends gnome-keyring dbus"
SERVICE_NAME = "org.freedesktop.secrets"
START_TIMEOUT = 15.0

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def require_tools() -> None:
    """Skip (or, under CREDPROXY_REQUIRE_SYSTEM_TOOLS=1, fail) when a tool is missing. Not on
    Linux: skip (uv's native store is the Secret Service on Linux only)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("uv's native store is the Secret Service on Linux only")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (Debian/Ubuntu: `{INSTALL}`)"
    if os.environ.get("CREDPROXY_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(f"CREDPROXY_REQUIRE_SYSTEM_TOOLS=1 and {message}; scripts/ci-system-packages installs them",
                    pytrace=False)
    pytest.skip(message)


@dataclass
class SecretService:
    address: str
    runtime_dir: Path
    bus: subprocess.Popen = field(repr=False)
    daemon: subprocess.Popen = field(repr=False)
    log: Path = field(repr=False)

    @property
    def env(self) -> dict[str, str]:
        """What a client needs to find this Secret Service (merge into its environment)."""
        return {"DBUS_SESSION_BUS_ADDRESS": self.address, "XDG_RUNTIME_DIR": str(self.runtime_dir)}

    @contextlib.contextmanager
    def _connection(self):
        from jeepney.io.blocking import open_dbus_connection

        connection = open_dbus_connection(bus=self.address)
        try:
            yield connection
        finally:
            connection.close()

    def items(self) -> list[dict[str, str]]:
        """Every item of every collection: its attributes plus `label` (never the secret)."""
        import secretstorage

        found = []
        with self._connection() as connection:
            for collection in secretstorage.get_all_collections(connection):
                for item in collection.get_all_items():
                    found.append({**item.get_attributes(), "label": item.get_label()})
        return found

    def pairs(self) -> list[tuple[str, str | None]]:
        """Sorted (service, username) of every item."""
        return sorted((i.get("service", ""), i.get("username")) for i in self.items())

    def secret(self, service: str, username: str) -> list[str]:
        """The secrets of the items with these attributes (a test compares them to what it stored)."""
        import secretstorage

        with self._connection() as connection:
            items = secretstorage.search_items(connection, {"service": service, "username": username})
            return [item.get_secret().decode() for item in items]

    def clear(self) -> None:
        """Delete every item (between two logins whose results a test compares)."""
        import secretstorage

        with self._connection() as connection:
            for collection in secretstorage.get_all_collections(connection):
                for item in collection.get_all_items():
                    item.delete()

    def lock(self) -> None:
        """Lock every collection (as a screen lock or a timeout does)."""
        import secretstorage

        with self._connection() as connection:
            for collection in secretstorage.get_all_collections(connection):
                collection.lock()

    def alive(self) -> bool:
        return self.bus.poll() is None and self.daemon.poll() is None

    def stop(self) -> None:
        stop_pid(self.daemon, grace=5.0)
        stop_pid(self.bus, grace=5.0)


def _name_owned(address: str) -> bool:
    """Whether the Secret Service name has an owner (NameHasOwner activates nothing)."""
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus")
    connection = open_dbus_connection(bus=address)
    try:
        reply = connection.send_and_get_reply(new_method_call(bus, "NameHasOwner", "s", (SERVICE_NAME,)), timeout=5)
        return bool(reply.body[0])
    finally:
        connection.close()


def start_secret_service(directory: Path, *, password: str = "test-keyring-pw") -> SecretService:
    """Start the bus and an unlocked gnome-keyring in `directory` (its own HOME/XDG dirs, so
    the keyring file is the test's). Waits (bounded) until the Secret Service name is owned and
    its default collection answers."""
    require_tools()
    directory.mkdir(parents=True, exist_ok=True)
    runtime = directory / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    home = directory / "home"
    for sub in (".local/share", ".config", ".cache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    config = directory / "session-bus.conf"
    config.write_text(_BUS_CONFIG.format(socket=runtime / "bus"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }
    log = directory / "secret-service.log"
    with open(log, "wb") as err:
        bus = subprocess.Popen(["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env,
                               preexec_fn=die_with_parent)
    daemon = None
    try:
        address = _read_address(bus)
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        with open(log, "ab") as err:
            # --unlock reads the login keyring's password from stdin until EOF
            daemon = subprocess.Popen(["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                                      stdin=subprocess.PIPE, stdout=err, stderr=err, env=env,
                                      preexec_fn=die_with_parent)
        daemon.stdin.write(password.encode())
        daemon.stdin.close()
        service = SecretService(address, runtime, bus, daemon, log)
        _wait_ready(service)
        return service
    except BaseException:
        if daemon is not None:
            stop_pid(daemon, grace=2.0)
        stop_pid(bus, grace=2.0)
        raise


def _read_address(bus: subprocess.Popen) -> str:
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(bus.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=START_TIMEOUT):
            raise RuntimeError(f"dbus-daemon printed no address within {START_TIMEOUT} s")
    address = bus.stdout.readline().decode().strip()
    if not address:
        raise RuntimeError(f"dbus-daemon exited ({bus.poll()}) without an address")
    return address


def _wait_ready(service: SecretService) -> None:
    import secretstorage

    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not service.alive():
            break
        try:
            if _name_owned(service.address):
                with service._connection() as connection:
                    collection = secretstorage.get_default_collection(connection)
                    if not collection.is_locked():
                        return
                    last = RuntimeError("the default collection is locked")
        except Exception as e:  # noqa: BLE001 - not up yet
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"the Secret Service did not come up unlocked within {START_TIMEOUT} s ({last!r}); "
                       f"log:\n{service.log.read_text(errors='replace')[-2000:]}")


@contextlib.contextmanager
def secret_service(directory: Path) -> Iterator[SecretService]:
    service = start_secret_service(directory)
    try:
        yield service
    finally:
        service.stop()
