"""A private PostgreSQL cluster and a private RabbitMQ node for fault scenarios.

Restarting, killing or cutting off a service must touch nobody else: other engineers run their
tests against the machine's shared RabbitMQ (5672) and PostgreSQL (5432) at the same time. These
context managers start services of our own on free loopback ports, with every file under a temp
dir, and remove everything on exit.

- `PrivatePostgres`: `initdb` + `pg_ctl` from /usr/lib/postgresql/15/bin, run as the `postgres` OS
  user (initdb refuses root), trust auth, listening on 127.0.0.1:<free port> with its unix socket in
  the temp dir. `start()`, `stop(mode="immediate")`, `restart()`.
- `PrivateRabbitMQ`: a second node `sbfault-<id>@localhost` run as the `rabbitmq` OS user with its
  own Erlang cookie (so its CLI calls cannot reach the shared node), its own config file (only an
  AMQP listener on 127.0.0.1:<free port>), its own env file (the shared /etc/rabbitmq/rabbitmq-env.conf
  names the shared node), an empty plugins file (no management listener) and a distribution port of
  its own. `stop_app()`/`start_app()`, `restart()`, `stop_node()`/`start_node()`.

Nothing here puts RABBITMQ_* or PG* variables into os.environ: the test suite's own `rabbitmqctl`
calls against the shared node must not be redirected to ours.

`python -m bench.private_services` starts both, prints their URLs, restarts each once and stops.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench._harness import free_port, log

PG_BIN = Path(os.environ.get("SWITCHBOARD_FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
RABBITMQ_SCRIPTS = Path("/usr/lib/rabbitmq/bin")
# Ports the shared services use; a private service must never take one of them.
SHARED_PORTS = frozenset({5432, 5672, 15672, 25672, 4369})


class ServiceUnavailable(RuntimeError):
    """A private service cannot be started on this machine; the message says precisely why."""


def _private_port() -> int:
    while True:
        port = free_port()
        if port not in SHARED_PORTS:
            return port


def _os_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ServiceUnavailable(f"there is no {name!r} OS user to run the service as") from None


def _as_user(user: str, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    """Run argv as `user` (we are root) or as ourselves (we are that user already). `env` is passed
    through `env(1)` after the switch, since runuser resets HOME."""
    if env:
        argv = ["/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), *argv]
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            raise ServiceUnavailable("running as root but `runuser` is missing, so services cannot drop root")
        return [runuser, "-u", user, "--", *argv]
    if pwd.getpwuid(os.geteuid()).pw_name != user:
        raise ServiceUnavailable(f"must run as root or as the {user!r} user to start a private service")
    return argv


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def _run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120.0,
         cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise ServiceUnavailable(
            f"`{' '.join(argv[-6:])}` exited {result.returncode}: {(result.stderr or result.stdout).strip()[-1500:]}"
        )
    return result


class _Private:
    """Context-manager plumbing shared by both services."""

    def __init__(self, prefix: str, owner: str) -> None:
        self.prefix = prefix
        self.owner_name = owner
        self.tmp: Path | None = None
        self.started = False
        # False for a handle attached from `describe()` in another process: it may restart the
        # service but never removes it.
        self.owned = True

    def _make_tmp(self) -> Path:
        owner = _os_user(self.owner_name)
        # /tmp itself is world-traversable, so the service user reaches its dir there.
        self.tmp = Path(tempfile.mkdtemp(prefix=self.prefix))
        os.chmod(self.tmp, 0o700)
        if os.geteuid() == 0:
            os.chown(self.tmp, owner.pw_uid, owner.pw_gid)
        return self.tmp

    def _cleanup_tmp(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self.owned:
            self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


# --- PostgreSQL ------------------------------------------------------------------------------------


class PrivatePostgres(_Private):
    """A PostgreSQL cluster of our own; `url(db)` is a SQLAlchemy URL for it."""

    def __init__(self, *, bin_dir: Path = PG_BIN, port: int | None = None) -> None:
        super().__init__("sbfault-pg-", "postgres")
        self.bin_dir = bin_dir
        self.port = port or _private_port()

    @property
    def data_dir(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def describe(self) -> dict[str, Any]:
        return {"port": self.port, "tmp": str(self.tmp), "bin_dir": str(self.bin_dir)}

    @classmethod
    def attach(cls, description: dict[str, Any]) -> PrivatePostgres:
        """A handle on a cluster another process started (and will remove)."""
        handle = cls(bin_dir=Path(description["bin_dir"]), port=int(description["port"]))
        handle.tmp, handle.owned, handle.started = Path(description["tmp"]), False, True
        return handle

    def _pg(self, tool: str, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(_as_user("postgres", [str(self.bin_dir / tool), *args]), timeout=timeout, check=check,
                    cwd=self.tmp, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"})

    def __enter__(self) -> Self:
        for tool in ("initdb", "pg_ctl"):
            if not (self.bin_dir / tool).is_file():
                raise ServiceUnavailable(f"PostgreSQL binary {self.bin_dir / tool} is missing")
        tmp = self._make_tmp()
        try:
            self._pg("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                     "--no-sync", "--no-instructions")
            conf = self.data_dir / "postgresql.conf"
            with conf.open("a") as f:
                f.write(
                    "\n# sbfault: a private cluster for fault scenarios\n"
                    f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{tmp}'\n"
                    "max_connections = 300\nfsync = on\nlogging_collector = off\n"
                )
            self.start()
        except BaseException:
            self.close()
            raise
        log(f"private PostgreSQL on 127.0.0.1:{self.port} (data {self.data_dir})")
        return self

    def start(self, timeout: float = 60.0) -> None:
        self._pg("pg_ctl", "-D", str(self.data_dir), "-l", str(self.data_dir.parent / "postgres.log"),
                 "-w", "-t", str(int(timeout)), "start", timeout=timeout + 10)
        self.started = True

    def stop(self, mode: str = "immediate", timeout: float = 60.0) -> None:
        self._pg("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(int(timeout)), "stop",
                 timeout=timeout + 10)
        self.started = False

    def restart(self, mode: str = "immediate", down_s: float = 0.0) -> None:
        """Stop (immediate: every connection is cut, as in a crash), stay down `down_s`, start."""
        self.stop(mode)
        if down_s:
            time.sleep(down_s)
        self.start()

    def is_running(self) -> bool:
        return self.tmp is not None and self._pg("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        admin = create_engine(self.url(), poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.url(name)

    def drop_database(self, name: str) -> None:
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        admin = create_engine(self.url(), poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()

    @contextlib.contextmanager
    def database(self, name: str):  # type: ignore[no-untyped-def]
        url = self.create_database(name)
        try:
            yield url
        finally:
            with contextlib.suppress(Exception):
                if self.is_running():
                    self.drop_database(name)

    def close(self) -> None:
        if self.tmp is not None and self.data_dir.exists():
            with contextlib.suppress(Exception):
                self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", check=False, timeout=60)
        self.started = False
        self._cleanup_tmp()


# --- RabbitMQ --------------------------------------------------------------------------------------


class PrivateRabbitMQ(_Private):
    """A RabbitMQ node of our own; `url(vhost)` is an AMQP URL for it (user guest, loopback only)."""

    def __init__(self, *, port: int | None = None, dist_port: int | None = None) -> None:
        super().__init__("sbfault-rmq-", "rabbitmq")
        self.id = secrets.token_hex(4)
        self.node = f"sbfault-{self.id}@localhost"
        self.port = port or _private_port()
        self.dist_port = dist_port or _private_port()
        self._env: dict[str, str] = {}

    def url(self, vhost: str = "/") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/" + ("" if vhost == "/" else vhost)

    def describe(self) -> dict[str, Any]:
        return {"node": self.node, "port": self.port, "dist_port": self.dist_port, "tmp": str(self.tmp),
                "env": self._env}

    @classmethod
    def attach(cls, description: dict[str, Any]) -> PrivateRabbitMQ:
        """A handle on a node another process started (and will remove)."""
        handle = cls(port=int(description["port"]), dist_port=int(description["dist_port"]))
        handle.node, handle.tmp, handle._env = description["node"], Path(description["tmp"]), dict(description["env"])
        handle.owned, handle.started = False, True
        return handle

    def _prepare(self) -> None:
        for script in ("rabbitmq-server", "rabbitmqctl"):
            if not (RABBITMQ_SCRIPTS / script).is_file():
                raise ServiceUnavailable(f"RabbitMQ script {RABBITMQ_SCRIPTS / script} is missing")
        owner = _os_user("rabbitmq")
        tmp = self._make_tmp()
        home = tmp / "home"
        home.mkdir()
        # A cookie of our own: our CLI calls can only ever authenticate to our node.
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20).upper())
        os.chmod(cookie, 0o400)
        (tmp / "mnesia").mkdir()
        (tmp / "log").mkdir()
        # No plugins: no management listener on 15672 (or anywhere).
        (tmp / "enabled_plugins").write_text("[].\n")
        # Only an AMQP listener on our port; the shared /etc/rabbitmq/rabbitmq.conf (5672) is not read.
        (tmp / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n"
            "disk_free_limit.absolute = 50MB\n"
            "log.console = false\nlog.file.level = info\n"
        )
        # Read instead of the shared /etc/rabbitmq/rabbitmq-env.conf, which names the shared node.
        (tmp / "rabbitmq-env.conf").write_text("# sbfault: nothing here on purpose\n")
        _chown_tree(tmp, owner)
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(home),
            "LC_ALL": "C.UTF-8",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(tmp / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(tmp / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(tmp / "advanced.config"),  # absent on purpose
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"),
            "RABBITMQ_LOG_BASE": str(tmp / "log"),
            "RABBITMQ_PID_FILE": str(tmp / "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def ctl(self, *args: str, timeout: float = 90.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = _as_user("rabbitmq", [str(RABBITMQ_SCRIPTS / "rabbitmqctl"), "-q", "-n", self.node, *args], self._env)
        return _run(argv, env=self._env, timeout=timeout, check=check, cwd=self.tmp)

    def __enter__(self) -> Self:
        try:
            self._prepare()
            self.start_node()
        except BaseException:
            self.close()
            raise
        log(f"private RabbitMQ node {self.node} on 127.0.0.1:{self.port} (dist {self.dist_port})")
        return self

    def start_node(self, timeout: float = 120.0) -> None:
        argv = _as_user("rabbitmq", [str(RABBITMQ_SCRIPTS / "rabbitmq-server"), "-detached"], self._env)
        _run(argv, env=self._env, timeout=60, cwd=self.tmp)
        # `-detached` returns before the node has registered with epmd, and await_startup fails at
        # once ("not running at all") until it has: poll.
        deadline = time.monotonic() + timeout
        while True:
            result = self.ctl("await_startup", "--timeout", "30", timeout=60, check=False)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if result.returncode != 0:
            tail = self._log_tail()
            raise ServiceUnavailable(
                f"RabbitMQ node {self.node} did not start: {(result.stderr or result.stdout).strip()[-800:]}"
                + (f"\n--- node log ---\n{tail}" if tail else "")
            )
        self.started = True

    def _log_tail(self, lines: int = 30) -> str:
        if self.tmp is None:
            return ""
        out = []
        for path in sorted((self.tmp / "log").glob("*.log")):
            with contextlib.suppress(OSError):
                out.append(f"{path.name}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", "60")

    def restart(self, down_s: float = 0.0, *, whole_node: bool = False) -> None:
        """stop_app, stay down `down_s`, start_app (or stop and start the whole node). Durable queues
        and persistent messages survive either way."""
        if whole_node:
            self.stop_node()
            if down_s:
                time.sleep(down_s)
            self.start_node()
            return
        self.stop_app()
        if down_s:
            time.sleep(down_s)
        self.start_app()

    def stop_node(self) -> None:
        self.ctl("stop", timeout=120)
        self.started = False

    def add_vhost(self, name: str) -> str:
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        return self.url(name)

    def delete_vhost(self, name: str) -> None:
        self.ctl("delete_vhost", name, check=False)

    @contextlib.contextmanager
    def vhost(self, name: str):  # type: ignore[no-untyped-def]
        url = self.add_vhost(name)
        try:
            yield url
        finally:
            with contextlib.suppress(Exception):
                self.delete_vhost(name)

    def _pids(self) -> list[int]:
        """Our node's Erlang VM, found by the private home dir on its command line (RabbitMQ does not
        write RABBITMQ_PID_FILE when started with -detached)."""
        if self.tmp is None:
            return []
        marker = f"-home {self.tmp / 'home'} ".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ") + b" ":
                    pids.append(int(entry.name))
        return pids

    def close(self) -> None:
        if self.tmp is not None and self._env:
            with contextlib.suppress(Exception):
                self.ctl("stop", timeout=60, check=False)
            # Our node only, by its own pids, if `stop` did not take it down.
            deadline = time.monotonic() + 10
            while self._pids() and time.monotonic() < deadline:
                time.sleep(0.2)
            for pid in self._pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, 9)
        self.started = False
        self._cleanup_tmp()


# --- both ------------------------------------------------------------------------------------------


class PrivateStack:
    """Both private services, each optional: `pg`/`rabbit` is None with `*_error` saying why."""

    def __init__(self, *, postgres: bool = True, rabbitmq: bool = True) -> None:
        self.want_pg, self.want_rabbit = postgres, rabbitmq
        self.pg: PrivatePostgres | None = None
        self.rabbit: PrivateRabbitMQ | None = None
        self.pg_error: str | None = None
        self.rabbit_error: str | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        if self.want_pg:
            try:
                self.pg = self._stack.enter_context(PrivatePostgres())
            except (ServiceUnavailable, OSError, subprocess.SubprocessError) as exc:
                self.pg_error = f"private PostgreSQL cannot start: {exc}"
                log(self.pg_error)
        if self.want_rabbit:
            try:
                self.rabbit = self._stack.enter_context(PrivateRabbitMQ())
            except (ServiceUnavailable, OSError, subprocess.SubprocessError) as exc:
                self.rabbit_error = f"private RabbitMQ cannot start: {exc}"
                log(self.rabbit_error)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def unavailable(self) -> str | None:
        return self.pg_error or self.rabbit_error


def _demo() -> int:
    with PrivateStack() as stack:
        if stack.unavailable:
            print(stack.unavailable, file=sys.stderr)
            return 3
        assert stack.pg and stack.rabbit
        print(stack.pg.url(), stack.rabbit.url())
        started = time.monotonic()
        stack.pg.restart()
        print(f"postgres restarted in {time.monotonic() - started:.1f}s")
        started = time.monotonic()
        stack.rabbit.restart()
        print(f"rabbitmq restarted in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(_demo())
