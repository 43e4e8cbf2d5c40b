"""Remote profiling over SSH: copy the model, run the agent there, read back its JSON.

Uses the system's OpenSSH client. Host-key checking stays on (BatchMode: no prompts), every
call has a timeout, and no shell string is built from user input: the remote commands are
fixed strings with every variable part quoted by shlex.quote.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RuntimeFailure, UsageError
from .isolate import AGENT, interpret

_HOST = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<addr>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])"
                   r"(?::(?P<port>\d{1,5}))?$")


@dataclass
class Remote:
    """Where and how to reach a device."""

    address: str
    user: str | None = None
    port: int = 22
    identity: str | None = None
    known_hosts: str | None = None
    python: str = "python3"
    connect_timeout: int = 10
    extra: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, spec: str, **kwargs) -> Remote:
        m = _HOST.match(spec)
        if not m:
            raise UsageError(f"--host must look like USER@ADDRESS[:PORT]; received {spec!r}",
                             "e.g. --host pi@192.168.1.20:22")
        default_port = kwargs.pop("port", 22)
        port = int(m["port"]) if m["port"] else default_port
        if not 0 < port < 65536:
            raise UsageError(f"port out of range: {port}", "use 1-65535")
        return cls(address=m["addr"].strip("[]"), user=m["user"], port=port, **kwargs)

    @property
    def target(self) -> str:
        return f"{self.user}@{self.address}" if self.user else self.address

    def _options(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR"]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.identity:
            opts += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        return opts + self.extra

    def ssh(self, command: str, timeout: float, stdin: bytes | None = None):
        exe = shutil.which("ssh")
        if exe is None:
            raise UsageError("remote profiling needs the OpenSSH client (ssh)",
                             "install it: sudo apt-get install openssh-client")
        argv = [exe, *self._options(), "-p", str(self.port), "--", self.target, command]
        try:
            return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"ssh to {self.target}:{self.port} timed out after {timeout:g} s",
                                 "check that the device is up, or raise --timeout") from None

    def check(self, proc, what: str) -> str:
        if proc.returncode == 255:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeFailure(f"ssh to {self.target}:{self.port} failed while {what}: "
                                 f"{err[-1] if err else 'no message'}",
                                 "check the address, your key (--identity) and the host key "
                                 "(--known-hosts; edgenn never skips host-key checking)")
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()[-300:]
            raise RuntimeFailure(f"{what} on {self.target} failed (exit {proc.returncode}): {err}",
                                 "check that python3 with numpy and a runtime is installed there")
        return proc.stdout.decode()


def run_remote(remote: Remote, config: dict, timeout: float = 300) -> dict:
    """Copy the model and the agent to a fresh remote folder, run it, clean up, return JSON."""
    model = Path(config["model"])
    workdir = remote.check(remote.ssh("mktemp -d /tmp/edgenn.XXXXXX", timeout),
                           "creating a work folder").strip()
    if not re.fullmatch(r"/tmp/edgenn\.[A-Za-z0-9]+", workdir):
        raise RuntimeFailure(f"unexpected remote work folder {workdir!r}", "check the device's mktemp")
    q = shlex.quote
    try:
        remote_model = f"{workdir}/{re.sub(r'[^A-Za-z0-9._-]', '_', model.name)}"
        remote.check(remote.ssh(f"cat > {q(remote_model)}", timeout, model.read_bytes()),
                     "copying the model")
        remote.check(remote.ssh(f"cat > {q(workdir + '/agent.py')}", timeout, AGENT.read_bytes()),
                     "copying the agent")
        remote_cfg = {**config, "model": remote_model, "workdir": workdir}
        import json

        proc = remote.ssh(f"cd {q(workdir)} && {q(remote.python)} agent.py -", timeout,
                          json.dumps(remote_cfg).encode())
        if proc.returncode == 255:
            remote.check(proc, "running the agent")
        result = interpret(str(model), proc.returncode, proc.stdout.decode(errors="replace"),
                           proc.stderr.decode(errors="replace"))
    finally:
        remote.ssh(f"rm -rf -- {q(workdir)}", timeout)
    result["model"] = str(model)
    result["host"] = f"{remote.target}:{remote.port}"
    return result
