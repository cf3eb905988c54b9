"""The examples' job: says where it runs, then, given SECONDS, works that long
in small steps. On SIGUSR1 (Slurm's warning before the time limit) it saves a
checkpoint and goes on; on SIGTERM (scancel, the time limit) it saves one and
exits cleanly. A later run resumes from the checkpoint ($CHECKPOINT, default
checkpoint.txt in the current directory).

    python3 job.py            # one line: Python, OS, node, scheduler ids
    python3 job.py 3600       # and an hour of work
"""
import os
import platform
import signal
import sys
import time

IDS = ("SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_PROCID", "SLURM_NTASKS", "PBS_JOBID")

# The handler only notes the signal; the loop acts on it. A handler that
# printed could cut into a print of the loop's. Under some schedulers a
# signal comes twice (from Slurm and, passed on, from hpcrun): noting it twice
# changes nothing.
pending = []
signal.signal(signal.SIGTERM, lambda sig, frame: pending.append(sig))
signal.signal(signal.SIGUSR1, lambda sig, frame: pending.append(sig))


def os_name():
    with open("/etc/os-release") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return "unknown OS"


def checkpoint(path, step, why):
    with open(path + ".new", "w") as f:
        f.write(f"step={step} signal={why}\n")
    os.replace(path + ".new", path)  # a job killed mid-write keeps the old one


def main():
    ids = "".join(f" {k}={os.environ[k]}" for k in IDS if k in os.environ)
    where = f"Python {platform.python_version()} on {os_name()}, node {platform.node()}"
    print(where + (ids and ":" + ids), flush=True)
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 0
    path = os.environ.get("CHECKPOINT", "checkpoint.txt")
    step = 0
    if seconds and os.path.exists(path):
        with open(path) as f:
            step = int(f.read().split()[0].removeprefix("step="))
        print(f"resuming at step {step}", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.1)  # one step of work
        step += 1
        while pending:
            name = signal.Signals(pending.pop(0)).name
            checkpoint(path, step, name)
            print(f"{name}: checkpoint at step {step} in {path}", flush=True)
            if name == "SIGTERM":
                print("exiting cleanly", flush=True)
                return 0
    if seconds:
        print(f"done after {step} steps", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
