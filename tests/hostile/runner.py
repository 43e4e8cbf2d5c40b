"""Run every case of a hostile corpus through the real CLI, in one interpreter, and record what
each did: exit code, stdout, stderr, files created, markers written.

Usage: python runner.py CORPUS_DIR RESULTS.json. One process, so TensorFlow is imported once
(the cases would take half an hour as separate processes); each case still goes through
``edgenn.cli.main.main`` exactly as a shell command does, with stdout and stderr captured at the
file-descriptor level. A case that runs past its alarm is recorded as a hang.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

CASE_SECONDS = 120


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def files_under(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            out.add(os.path.join(dirpath, name))
    return out


def run_case(args: list[str], cwd: Path) -> dict:
    from edgenn.cli import output
    from edgenn.cli.main import main
    from edgenn.limits import set_max_unpacked

    output.STATE.json = output.STATE.quiet = output.STATE.debug = False
    os.environ.pop("EDGENN_DEBUG", None)
    set_max_unpacked(None)
    out_f = tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    saved = os.dup(1), os.dup(2)
    here = os.getcwd()
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out_f.fileno(), 1)
    os.dup2(err_f.fileno(), 2)
    os.chdir(cwd)
    code, crash = None, None
    started = time.monotonic()
    signal.alarm(CASE_SECONDS)
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Hang:
        code, crash = -1, "hang"
    except BaseException:  # noqa: B036 - a case must never take the runner down
        code, crash = 1, traceback.format_exc()
    finally:
        signal.alarm(0)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        os.chdir(here)
    seconds = time.monotonic() - started
    out_f.seek(0)
    err_f.seek(0)
    return {"code": code, "out": out_f.read().decode("utf-8", "replace"),
            "err": err_f.read().decode("utf-8", "replace"), "crash": crash,
            "seconds": round(seconds, 2)}


def main(corpus: Path, results_path: Path) -> None:
    signal.signal(signal.SIGALRM, _alarm)
    cases = json.loads((corpus / "cases.json").read_text())
    only = set(sys.argv[3:])
    results = []
    for case in cases:
        if only and case["name"] not in only:
            continue
        cwd = Path(tempfile.mkdtemp(prefix="edgenn-hostile-cwd-"))
        args = list(case["args"])
        if "--json" not in args and "--debug" not in args:
            args.append("--quiet")
        output = Path(case["output"]) if case.get("output") else None
        existed = output is not None and output.exists()
        before = files_under(corpus)
        result = run_case(args, cwd)
        after = files_under(corpus)
        created = sorted(after - before)
        markers = sorted(str(p) for p in (corpus / "markers").iterdir())
        result.update({"name": case["name"], "args": args, "expect": case["expect"],
                       "needle": case.get("needle"), "created": created, "markers": markers,
                       "cwd_files": sorted(files_under(cwd)), "output": case.get("output"),
                       "output_existed": existed})
        results.append(result)
        for p in (corpus / "markers").iterdir():  # one payload must not hide the next case's
            p.unlink() if p.is_file() else os.rmdir(p)
        if output is not None and not existed and output.exists() and result["code"] != 0:
            pass  # recorded in "created"; left for the test to report
    results_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
