"""Start Azurite (installed from npm into the project's node_modules) on 127.0.0.1 and wait for it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from shared.settings import PROJECT_ROOT

# Azurite's documented development account: public, and only ever valid against the local emulator.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteMissing(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def azurite_binary() -> Path:
    binary = PROJECT_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if shutil.which("node") is None:
        raise AzuriteMissing("Node.js is not on PATH: Azurite (the local Blob Storage) needs Node.js 18+ and npm")
    if binary.exists():
        return binary
    raise AzuriteMissing(f"Azurite is not installed in {PROJECT_ROOT / 'node_modules'}: run `make install` (npm ci)")


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Run as `python -c _EXEC_DYING_WITH_PARENT <parent pid> <command...>`: asks Linux for SIGTERM when the parent
# ends (PR_SET_PDEATHSIG), then becomes the command (exec keeps the request). A subprocess, not preexec_fn:
# the stack has threads, and preexec_fn is not safe with threads.
_EXEC_DYING_WITH_PARENT = (
    "import ctypes, ctypes.util, os, signal, sys\n"
    "libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)\n"
    "libc.prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)  # the parent ended before the request was made\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def _dying_with_parent(command: list[str]) -> list[str]:
    """On Linux, `command` so that it gets SIGTERM when this process ends (a stack killed hard left Azurite
    running on its state directory). Only from the main thread: the signal follows the thread that started
    the child, and the main thread's end is the process's end."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return command
    return [sys.executable, "-c", _EXEC_DYING_WITH_PARENT, str(os.getpid()), *command]


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


class Azurite:
    def __init__(self, location: Path | None, port: int | None = None, log_file: Path | None = None):
        self.location = location
        self.port = port or free_port()
        self.log_file = log_file
        self.process: subprocess.Popen | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    def start(self, timeout: float = 30.0) -> Azurite:
        command = [
            str(azurite_binary()),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--skipApiVersionCheck",
            "--loose",
            "--disableProductStyleUrl",
        ]
        if self.location is None:
            command.append("--inMemoryPersistence")
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            command += ["--location", str(self.location)]
        output = subprocess.DEVNULL
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            output = open(self.log_file, "ab")
        self.process = subprocess.Popen(
            _dying_with_parent(command), stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AzuriteMissing(f"Azurite exited with code {self.process.returncode} (see {self.log_file})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AzuriteMissing(f"Azurite did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
