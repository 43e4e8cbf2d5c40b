"""Run the agent in a child process with a timeout and a memory limit, one model at a time.

A runtime that crashes (segfault, out of memory) takes down only its child: the parent turns
that into an error for that model and the other models still report.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

AGENT = Path(__file__).with_name("agent.py")
MARK = "EDGENN-RESULT "


# How running out of memory reads in the agent's error: Python's, and ONNX Runtime's arena's
_OUT_OF_MEMORY = ("MemoryError", "Failed to allocate memory")


def parse_agent_output(stdout: str) -> dict | None:
    """The agent's JSON document (the line after its marker), or None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    return None


def _limits(memory_mb: int | None, cpus: list[int] | None):
    def apply():
        if memory_mb:
            limit = int(memory_mb) * 1024 * 1024
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:  # a shell's `ulimit -v` below it: keep that
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if cpus:
            os.sched_setaffinity(0, cpus)

    return apply


def default_memory_mb() -> int | None:
    """The child's address-space limit when none is given: 3/4 of the memory available now.

    A file can declare tensors of any size (a 1 KB .tflite whose arena is 19 GB): past this
    limit its allocation fails in the child and is reported, instead of the kernel's
    out-of-memory killer choosing a process on this machine.
    """
    from ..limits import available_bytes

    free = available_bytes()
    return None if free is None else max(free * 3 // 4 >> 20, 2048)


def run_local(config: dict, timeout: float = 300, memory_mb: int | None = None,
              cpus: list[int] | None = None) -> dict:
    """Profile one model in a child interpreter; errors come back as {"error": ...}.

    ``memory_mb`` limits the child's address space (default: ``default_memory_mb``).
    """
    memory_mb = memory_mb or default_memory_mb()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    try:
        proc = subprocess.run([sys.executable, str(AGENT), json.dumps(config)],
                              capture_output=True, text=True, timeout=timeout, env=env,
                              preexec_fn=_limits(memory_mb, cpus))
    except subprocess.TimeoutExpired:
        return {"model": config["model"], "error": f"timed out after {timeout:g} s", "timed_out": True,
                "hint": "raise --timeout or lower --runs/--duration"}
    return interpret(config["model"], proc.returncode, proc.stdout, proc.stderr, memory_mb)


def interpret(model: str, returncode: int, stdout: str, stderr: str,
              memory_mb: int | None = None) -> dict:
    """Turn a finished agent process into a result or a one-line error."""
    result = parse_agent_output(stdout)
    if result is not None and "error" not in result:
        return result
    if result is not None:
        error = result["error"]
        if any(sign in error for sign in _OUT_OF_MEMORY) or "std::bad_alloc" in stderr:
            return {"model": model, "error": f"out of memory (limit {memory_mb} MB): {error}",
                    "out_of_memory": True, "hint": "raise --memory-limit, or run it on a "
                    "machine with more memory"}
        return {"model": model, "error": error,
                **({"hint": result["hint"]} if result.get("hint") else {})}
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return {"model": model, "error": f"the runtime crashed ({name})", "signal": name,
                "hint": "the model or the runtime is broken; `edgenn inspect` the model"}
    if "MemoryError" in stderr or "bad_alloc" in stderr:
        return {"model": model, "error": f"out of memory (limit {memory_mb} MB)",
                "out_of_memory": True, "hint": "raise --memory-limit"}
    tail = " ".join(stderr.strip().splitlines()[-1:])[:300] if stderr.strip() else "no output"
    return {"model": model, "error": f"the profiler exited with code {returncode}: {tail}"}


# One run of a model in a child, for the figures `estimate` needs (shapes, loop counts)
_CHILD_MARK = "EDGENN-CHILD "


def run_child(module: str, args: list[str], what: str, hint: str, timeout: float = 600) -> dict:
    """The JSON document ``python -m module *args`` prints through `child_output`.

    The child runs with an address-space limit (`default_memory_mb`): a file can declare any
    input size, or resize a small input to 18 GB inside, and the run that sizes its tensors
    would then take the machine. Past the limit the child fails and ``what`` is refused in one
    line; any other failure too, with ``hint``.
    """
    from ..errors import UsageError

    memory_mb = default_memory_mb()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                              text=True, env=env, timeout=timeout,
                              preexec_fn=_limits(memory_mb, None))
    except subprocess.TimeoutExpired:
        raise UsageError(f"{what} did not finish within {timeout:g} s", hint) from None
    doc = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_CHILD_MARK):
            doc = json.loads(line[len(_CHILD_MARK):])
            break
    if doc is not None and "error" not in doc:
        return doc
    said = " ".join(proc.stderr.strip().splitlines()[-1:])[:200]  # the runtime's own last word
    reason = doc["error"] if doc else (said or f"exit {proc.returncode}")
    if doc and reason.endswith(":") and said:  # an exception with no message of its own
        reason = f"{reason} {said}"
    if any(sign in reason + proc.stderr for sign in (*_OUT_OF_MEMORY, "bad_alloc")):
        raise UsageError(f"{what} needs more than {memory_mb} MB (the limit edgenn sets: 3/4 of "
                         "the memory available)", "give a smaller --input-shape, or run it on a "
                         "machine with more memory")
    raise UsageError(f"{what} failed: {' '.join(reason.split())[:200]}", hint)


def child_output(work) -> None:
    """The child's side of `run_child`: print ``work()``'s JSON document, or its error."""
    try:
        doc = work()
    except Exception as err:  # noqa: BLE001 - any failure goes back to the parent as text
        doc = {"error": f"{type(err).__name__}:{' ' + str(err) if str(err) else ''}"}
    print(_CHILD_MARK + json.dumps(doc), flush=True)
