"""Launching two-process runs from tests: distinct rendezvous ports, a clean environment (CPU,
one thread each) and one rerun of a launch whose worker aborted in gloo's native code."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

import tunesmith

TIMEOUT = 300
SRC = str(Path(tunesmith.__file__).resolve().parents[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all sockets are held open until every port is chosen (one socket
    at a time could be handed the same port twice, and two launches on one rendezvous port join
    each other's process group)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def start(cmd: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",  # a CPU run even where GPUs exist
        HF_HOME=str(cwd / "hf"),  # no user accelerate config
        TOKENIZERS_PARALLELISM="false",
    )
    # the tunesmith under test, whatever the launch's working folder (PYTHONPATH may be relative)
    env["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [env.get("PYTHONPATH")])])
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT", "ACCELERATE_USE_CPU"):
        env.pop(var, None)
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
    )


# A worker killed by SIGABRT in native code (gloo's TCP transport: "terminate called without an
# active exception", seen once in CI with five training processes on two cores) is not a
# tunesmith failure: such a launch runs once more, alone, on a fresh port and folder, with a
# warning. A Python error, a timeout or a wrong result still fails at once.
NATIVE_ABORT = ("SIGABRT", "terminate called")


@dataclasses.dataclass
class Launch:
    """One two-process launch: ``make(port)`` is its command; it writes to ``cwd / name``."""

    name: str
    cwd: Path
    make: Callable[[int, Path], list[str]]
    proc: subprocess.Popen | None = None

    def start(self, port: int) -> Launch:
        self.proc = start(self.make(port, self.cwd / self.name), self.cwd)
        return self

    def wait(self) -> tuple[str, str]:
        try:
            return self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.communicate()

    def finished(self) -> str:
        """Wait for the launch; returns its stdout (all its output goes in a failure message)."""
        out, err = self.wait()
        if self.proc.returncode != 0 and all(sign in err for sign in NATIVE_ABORT):
            note = f"{self.name}: a worker aborted in native code; once more:\n{err[-1500:]}"
            warnings.warn(note, stacklevel=2)
            shutil.rmtree(self.cwd / self.name, ignore_errors=True)
            out, err = self.start(free_ports(1)[0]).wait()
        proc = self.proc
        assert proc.returncode == 0, f"{' '.join(proc.args)}\n{out[-3000:]}\n{err[-6000:]}"
        return out

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
