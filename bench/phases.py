#!/usr/bin/env python3
"""bench/phases.py - where the time of a warm `hpcrun --rootfs R true` goes.

Usage: bench/phases.py [--rounds N] [--user UID:GID] --hpcrun PATH --rootfs DIR --home DIR

Runs, as root, rounds of `hpcrun --rootfs DIR true` and of bwrap with the
same binds (/sys read-only, /dev, /tmp, /var/tmp, $HOME, /etc/hosts and
/etc/resolv.conf, the rootfs read-only at /) as the unprivileged user, each
under `perf record` with scheduler and system-call tracepoints only (no
sampling), in alternating order. From the kernel's own timestamps it splits
hpcrun's start into phases and prints the median of each, next to bwrap's
total; the durations of one round add up to its total. perf's tracing adds
a little to every phase; the totals are for comparing the two, not for
quoting (startlat measures those).

  front: exec to clone    the command's exec, the Go runtime's start and
                          package initialization up to the clone of the
                          init (package first)
  init: clone to exec     fork of the front and exec of the init
  init: exec to ready     the init's Go runtime and package
                          initialization, until it reads its config
  init: wait for config   the front's flags, settings, scheduler and spec
                          that the init is still waiting for, if any
  init: mounts            config read to pivot_root: namespaces, the
                          rootfs, binds, generated files, masks
  job: pivot to exec      fork and exec of the job
  job: true               the job itself, from exec to exit
  exit                    the job's exit to the front's
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

# The init reads its config on fd 3 and makes itself undumpable
# (prctl PR_SET_DUMPABLE, 4) once it has it; filters keep the other reads
# and prctls out of the trace, and its cost down.
EVENTS = ["-e", "sched:sched_process_exec", "-e", "sched:sched_process_fork", "-e", "sched:sched_process_exit",
          "-e", "syscalls:sys_enter_read", "--filter", "fd == 3",
          "-e", "syscalls:sys_enter_prctl", "--filter", "option == 4",
          "-e", "syscalls:sys_enter_pivot_root"]
LINE = re.compile(r"^\s*(\S.*?)\s+(\d+)/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$")

PHASES = ["front: exec to clone", "init: clone to exec", "init: exec to ready", "init: wait for config",
          "init: mounts", "job: pivot to exec", "job: true", "exit"]


def trace(cmd, user, home):
    with tempfile.NamedTemporaryFile(dir=home, suffix=".perf") as data:
        as_user = ["setpriv", "--reuid", user[0], "--regid", user[1], "--clear-groups",
                   "env", "-i", "PATH=/usr/bin:/bin", "HOME=" + home, "TMPDIR=/tmp"]
        subprocess.run(["perf", "record", "-q", "-a", "-o", data.name] + EVENTS + ["--"] + as_user + cmd,
                       cwd=home, check=True, stdout=subprocess.DEVNULL)
        out = subprocess.run(["perf", "script", "-i", data.name, "-F", "comm,pid,tid,time,event,trace"],
                             check=True, capture_output=True, text=True).stdout
    events = []
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            comm, pid, tid, t, ev, rest = m.groups()
            events.append((float(t) * 1000, int(pid), int(tid), ev.split(":")[-1], rest))
    return events


def field(rest, name):
    m = re.search(r"\b" + name + r"[=:]\s*([^\s,]+)", rest)
    return m.group(1) if m else None


def first(events, pred):
    for e in events:
        if pred(e):
            return e
    raise LookupError("event not found")


def hpcrun_phases(events, exe):
    front = first(events, lambda e: e[3] == "sched_process_exec" and field(e[4], "filename") == exe)
    fpid = front[1]
    init = first(events, lambda e: e[3] == "sched_process_exec" and field(e[4], "filename") == "/proc/self/exe"
                 and e[0] > front[0])
    ipid = init[1]
    fork = first(events, lambda e: e[3] == "sched_process_fork" and int(field(e[4], "child_pid")) == ipid)
    ready = first(events, lambda e: e[1] == ipid and e[3] == "sys_enter_read" and int(field(e[4], "fd"), 16) == 3)
    got = first(events, lambda e: e[1] == ipid and e[3] == "sys_enter_prctl" and e[0] >= ready[0])
    pivot = first(events, lambda e: e[1] == ipid and e[3] == "sys_enter_pivot_root")
    job = first(events, lambda e: e[3] == "sched_process_exec" and e[0] > pivot[0])
    jexit = first(events, lambda e: e[3] == "sched_process_exit" and e[2] == job[1])
    fexit = [e for e in events if e[3] == "sched_process_exit" and e[2] == fpid][-1]
    marks = [front, fork, init, ready, got, pivot, job, jexit, fexit]
    d = {name: marks[i + 1][0] - marks[i][0] for i, name in enumerate(PHASES)}
    d["total"] = fexit[0] - front[0]
    return d


def bwrap_total(events):
    start = first(events, lambda e: e[3] == "sched_process_exec" and field(e[4], "filename").endswith("/bwrap"))
    end = [e for e in events if e[3] == "sched_process_exit" and e[2] == start[1]][-1]
    return end[0] - start[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--user", default="65534:65534")
    ap.add_argument("--hpcrun", required=True)
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--home", required=True, help="the user's $HOME and working directory")
    a = ap.parse_args()
    user = a.user.split(":")
    exe = os.path.realpath(a.hpcrun)
    home = a.home
    bwrap = ["bwrap", "--unshare-user", "--unshare-pid", "--ro-bind", a.rootfs, "/", "--proc", "/proc",
             "--ro-bind", "/sys", "/sys", "--dev-bind", "/dev", "/dev", "--bind", "/tmp", "/tmp",
             "--bind", "/var/tmp", "/var/tmp", "--bind", home, home, "--ro-bind", "/etc/hosts", "/etc/hosts",
             "--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf", "--chdir", home, "true"]
    rows, bw = [], []
    for r in range(a.rounds + 1):
        order = [0, 1] if r % 2 == 0 else [1, 0]
        for o in order:
            if o == 0:
                d = hpcrun_phases(trace([exe, "--rootfs", a.rootfs, "true"], user, home), exe)
                if r > 0:
                    rows.append(d)
            else:
                t = bwrap_total(trace(bwrap, user, home))
                if r > 0:
                    bw.append(t)
    med = lambda xs: statistics.median(xs)
    print("warm `hpcrun --rootfs R true`, %d rounds under perf's tracepoints, medians (ms):" % a.rounds)
    for name in PHASES:
        print("  %-24s %6.2f" % (name, med([d[name] for d in rows])))
    print("  %-24s %6.2f   (medians of the phases add to %.2f)" % ("total", med([d["total"] for d in rows]),
                                                                   sum(med([d[n] for d in rows]) for n in PHASES)))
    print("  %-24s %6.2f   (same binds, same tracing)" % ("bwrap, total", med(bw)))


if __name__ == "__main__":
    try:
        main()
    except (subprocess.CalledProcessError, LookupError) as e:
        sys.exit("phases.py: %s" % e)
