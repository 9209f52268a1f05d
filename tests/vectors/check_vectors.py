#!/usr/bin/env python3
"""Runs `dmapickle check` and `dmapickle inspect` over directories of vectors.

usage: check_vectors.py --bin PATH/TO/dmapickle [--accept DIR]... [--reject DIR]...

--accept DIR: every DIR/*.pkl (with its .bufN files) must be accepted by `dmapickle check`
              (general profile, exit 0, `FILE: ok`) and `dmapickle inspect` must agree with
              pickletools opcode by opcode (see compare_dis.py).
--reject DIR: every DIR/*.pkl must be rejected (`FILE: rejected: REASON`, exit 1) within one
              second of the checker's own CPU time (user + system, from the child's rusage, so
              a loaded machine does not fail it; the least of up to 3 runs, so a cold page cache
              does not either; a 60 s wall-clock guard catches a hang), never
              crash; if DIR/manifest.json gives a `reason` for the case, the printed reason must
              contain it.
Prints each failure and a final `N passed, N failed` line; exits 1 on any failure.
"""
import argparse
import json
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_dis  # noqa: E402


def pickles(d):
    return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".pkl"))


def check(binary, path, timeout):
    out = subprocess.run([binary, "check", path], capture_output=True, timeout=timeout)
    return out.returncode, out.stdout.decode("utf-8", "replace").strip(), out.stderr.decode("utf-8", "replace")


def check_cpu(binary, path, wall_guard):
    """Like check(), and also the child's CPU seconds (user + system) from its rusage."""
    proc = subprocess.Popen([binary, "check", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=wall_guard)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    # communicate() reaped the child; its rusage is in the children's total, so take the delta.
    return proc.returncode, stdout.decode("utf-8", "replace").strip(), stderr.decode("utf-8", "replace")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--accept", action="append", default=[])
    ap.add_argument("--reject", action="append", default=[])
    args = ap.parse_args()
    passed = failed = 0

    def fail(path, why):
        nonlocal failed
        failed += 1
        print("FAIL %s: %s" % (path, why))

    for d in args.accept:
        files = pickles(d)
        if not files:
            fail(d, "no vectors")
        for path in files:
            code, out, err = check(args.bin, path, 10)
            if code != 0 or out != path + ": ok":
                fail(path, "not accepted (exit %d): %s %s" % (code, out, err.strip()[:200]))
                continue
            problem = compare_dis.compare(args.bin, path)
            if problem:
                fail(path, "inspect differs from pickletools: " + problem)
                continue
            passed += 1
    for d in args.reject:
        reasons = {}
        manifest = os.path.join(d, "manifest.json")
        if os.path.exists(manifest):
            with open(manifest) as f:
                reasons = {e["name"]: e.get("reason") for e in json.load(f)}
        files = pickles(d)
        if not files:
            fail(d, "no vectors")
        for path in files:
            name = os.path.basename(path)[:-4]
            # Up to 3 runs, the least CPU counted: a run's CPU time includes the kernel's page
            # faults, which on a cold cache (a freshly linked debug binary, a 1 MiB vector) cost
            # more than the check itself (seen in CI: 1.19 s once, 0.5 s after). A validator
            # that does too much work exceeds the budget on every run.
            times = []
            hung = False
            for _ in range(3):
                before = children_cpu()
                try:
                    code, out, err = check_cpu(args.bin, path, 60)
                except subprocess.TimeoutExpired:
                    hung = True
                    break
                times.append(children_cpu() - before)
                if times[-1] <= 1.0:
                    break
            if hung:
                fail(path, "not rejected within 60 s of wall-clock time (a hang)")
                continue
            if min(times) > 1.0:
                fail(path, "not rejected within 1 s of CPU time (took %s s)"
                     % " / ".join("%.2f" % t for t in times))
                continue
            prefix = path + ": rejected: "
            if code != 1 or not out.startswith(prefix) or len(out) == len(prefix):
                fail(path, "not rejected with a reason (exit %d): %s %s" % (code, out, err.strip()[:200]))
                continue
            want = reasons.get(name)
            if want and want not in out:
                fail(path, "rejected for another reason: %r, expected %r" % (out[len(prefix):], want))
                continue
            passed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
