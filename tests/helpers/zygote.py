"""A fork server for the CLI tests: TensorFlow and friends imported once, one fork per command.

Importing TensorFlow, Keras, tf_keras and tfmot takes ~9 s on the CI machine, and the suite
runs the CLI a few hundred times. This process imports them once (the way `edgenn` does,
through ``edgenn._tf``), then for each request forks a child that runs ``edgenn ARGS`` with
its own working directory, environment, stdin (/dev/null), stdout and stderr (files), exactly
as the CLI's ``main()`` runs in a fresh interpreter. Requests are JSON lines on stdin; the
answer is a JSON line on stdout with the exit code.

Runs that must prove something about a fresh process (no TensorFlow on the device side, a
changed environment at import time) do not come here: ``run_cli`` starts those as real
interpreters.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def preload() -> None:
    from edgenn._tf import keras3, tf, tf_keras

    tf()
    keras3()
    tf_keras()
    import ai_edge_litert.interpreter  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import tensorflow_model_optimization  # noqa: F401
    import tf2onnx  # noqa: F401

    import edgenn.cli.main  # noqa: F401


def child(request: dict) -> None:
    """Become the command: fds 0/1/2 replaced, then main() as `edgenn` runs it."""
    code = 1
    try:
        os.setpgid(0, 0)  # its own group: a timeout kills the command and what it started
        devnull = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (devnull, out, err):
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["edgenn", *request["args"]]
        from edgenn.cli.main import main

        try:
            main()
            code = 0
        except SystemExit as exit_:
            if exit_.code is None:
                code = 0
            elif isinstance(exit_.code, int):
                code = exit_.code
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - what a fresh interpreter would print
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> None:
    preload()
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(request)
        deadline = time.monotonic() + float(request.get("timeout", 300))
        status = None
        while status is None:
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(raw)
            elif time.monotonic() > deadline:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                status = "timeout"
            else:
                time.sleep(0.02)
        sys.stdout.write(json.dumps({"code": status}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
