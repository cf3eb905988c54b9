#!/bin/bash
# An interactive Python, or any program of the image, in a container on a
# compute node, at your terminal:
#   ./interactive.sh                  # python3; exit() or Ctrl-D ends the job
#   ./interactive.sh bash             # a shell in the image
#   SLURM_TIMELIMIT=30 SLURM_PARTITION=debug ./interactive.sh   # srun's options
# srun --pty gives the task a terminal; hpcrun gives the program the terminal's
# foreground, so Ctrl-C interrupts the program and not the job.
IMAGE=${IMAGE:-$HOME/images/py3.tar}
exec srun --ntasks=1 --pty hpcrun --image "$IMAGE" "${@:-python3}"
