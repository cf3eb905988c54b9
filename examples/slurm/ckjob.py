"""The checkpoint example's job: STEPS steps of work (default 600, a minute),
a running total kept in memory only, and the total printed at the end. Saved
by hpcrun checkpoint and continued by hpcrun --restore, however often, it
prints the total of a run without a break:

    python3 ckjob.py 600      # result 72180100
"""
import os
import sys
import time

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 600
total = 0
for i in range(1, steps + 1):
    total += i * i
    if i % 50 == 0:
        print(f"step {i} of {steps}, pid {os.getpid()}", flush=True)
    time.sleep(0.1)
print(f"result {total}", flush=True)
