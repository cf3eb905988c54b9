"""The demo job: shows that it runs in the image's Python, as you, in your directory."""
import getpass
import os
import platform
import sys

print(f"python {platform.python_version()} from {sys.executable}")
print(f"user {getpass.getuser()} (uid {os.getuid()}), pid {os.getpid()}")
print(f"cwd {os.getcwd()}")
with open("/etc/os-release") as f:
    print(next(line for line in f if line.startswith("PRETTY_NAME=")).strip())
print("args", sys.argv[1:])
