#!/usr/bin/env python3
"""How long a 4 KiB write + fdatasync takes on this disk, the way lessor's journal writer
does it. docs/PERFORMANCE.md ("Syncing on a busy VM") was measured with it.

    perf/sync-probe.py MODE COUNT [--dir DIR] [--realtime]

MODE: `append` (the file grows with each write) or `prezero` (the file is filled with 64 MiB
of zeros and synced first, and the writes go over the zeros, as in a preallocated segment).
--realtime: hold SCHED_FIFO 1 around each fdatasync only, as `journal.realtime_sync` does
(needs root or CAP_SYS_NICE). Load the cores yourself to see the busy case, e.g.
`taskset -c 0 sh -c 'while :; do :; done' &` and the same on core 1.
"""
import argparse
import os
import time

p = argparse.ArgumentParser()
p.add_argument("mode", choices=["append", "prezero"])
p.add_argument("count", type=int)
p.add_argument("--dir", default="/var/tmp")
p.add_argument("--realtime", action="store_true")
a = p.parse_args()

path = os.path.join(a.dir, f"sync-probe.{os.getpid()}")
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
try:
    if a.mode == "prezero":
        zeros = b"\0" * (1 << 20)
        for _ in range(64):
            os.write(fd, zeros)
        os.fsync(fd)
        os.lseek(fd, 0, os.SEEK_SET)
    buf = b"x" * 4096
    lat = []
    for _ in range(a.count):
        os.write(fd, buf)
        t = time.perf_counter()
        if a.realtime:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        os.fdatasync(fd)
        if a.realtime:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        lat.append((time.perf_counter() - t) * 1e6)
        time.sleep(0.0005)
    lat.sort()
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]
    rt = " realtime" if a.realtime else ""
    print(f"{a.mode}{rt}: p50 {q(.5):.0f} p90 {q(.9):.0f} p99 {q(.99):.0f} max {lat[-1]:.0f} us")
finally:
    os.close(fd)
    os.unlink(path)
