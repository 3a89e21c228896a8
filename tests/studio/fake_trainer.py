"""Stands in for `python -m higen_core.train` in the Train tab's tests: it reads its arguments with the trainer's own
parser (so a test sees exactly which value went to which field), writes what the real trainer writes (a JSON line per
step, complete checkpoints, sample videos, console output, its run.lock held) quickly, and on SIGTERM says so and exits
with 0."""

import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from higen_core.training.config import build_parser

args = build_parser().parse_args()
out = Path(args.output_dir)
(out / "logs").mkdir(parents=True, exist_ok=True)
# The run's lock, held while it runs, as the trainer's own (higen_core.training.lock).
lock = open(out / "run.lock", "a+")
fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
lock.truncate(0)
lock.write(json.dumps({"pid": os.getpid(), "host": "here", "started": time.time(), "command": "fake"}))
lock.flush()
sample_every = int(getattr(args, "sample_every", 0))
(out / "logs" / "arguments.json").write_text(json.dumps({k: v for k, v in vars(args).items()}))
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
print("fake trainer", " ".join(sys.argv[1:]), flush=True)
step = 0
while not stopping and step < min(int(getattr(args, "max_train_steps", 1200)), 1200):  # a minute at most
    step += 1
    with open(out / "logs" / "train_log.jsonl", "a") as log:
        log.write(json.dumps({"step": step, "loss": 1.0 / step, "lr": 1e-4, "samples_per_s": 20.0,
                              "kind": "video" if step % 2 else "image", "time": time.time()}) + "\n")
    if step % 3 == 0:
        checkpoint = out / "checkpoints" / f"step-{step:06d}"
        checkpoint.mkdir(parents=True, exist_ok=True)
        (checkpoint / "complete").touch()
    if sample_every and step % sample_every == 0:
        from higen_core.video_io import export_mp4

        (out / "samples").mkdir(exist_ok=True)
        export_mp4(np.full((4, 16, 16, 3), step % 255, np.uint8), out / "samples" / f"step-{step:06d}-0.mp4")
    print(f"step {step} loss {1.0 / step:.4f}", flush=True)
    time.sleep(0.05)
print("SIGTERM: saved a checkpoint, exiting" if stopping else "finished", flush=True)
