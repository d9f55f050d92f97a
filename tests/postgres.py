"""A throwaway PostgreSQL cluster for the tests: the distribution's server (`.ci/run` installs it),
started on a loopback port in a temporary folder, without durability (the tests need none), and
removed afterwards. As root, the server runs as the `postgres` account, which it insists on."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVER_SETTINGS = ("-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, else the newest of Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
                      if p.parts[-3].isdigit() else 0)
    return versions[-1].parent if versions else None


MISSING = "PostgreSQL's server is not installed (.ci/run installs the postgresql package)"


@dataclass
class Cluster:
    folder: Path
    port: int
    bin: Path
    account: str | None  # the account the server runs as (None: this one)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database(self) -> str:
        """The URL of a new, empty database of this cluster."""
        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")  # a name made here, not input
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        argv = [str(self.bin / tool), *args]
        if self.account is not None:
            argv = ["runuser", "-u", self.account, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr or result.stdout}")


def start() -> Cluster:
    bin_folder = binaries()
    if bin_folder is None:
        raise FileNotFoundError(MISSING)
    account = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="fixloop-pg-"))
    folder.chmod(0o755)  # the server's account reaches its data folder through it
    data = folder / "data"
    data.mkdir()
    if account is not None:
        entry = pwd.getpwnam(account)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster = Cluster(folder, port, bin_folder, account)
    try:
        cluster._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        cluster._run("pg_ctl", "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60", "-o",
                     f"-p {port} -k {data} {SERVER_SETTINGS}", "start")
    except BaseException:
        cluster.stop()
        raise
    return cluster
