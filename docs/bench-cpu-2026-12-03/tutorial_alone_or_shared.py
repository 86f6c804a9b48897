"""T0's 5×5-CNN loop (the bench's side (a) for `cnn5x5`) alone in a fresh process, or taking turns with `fit`'s.

Until 2026-12-03 07:00 UTC the bench ran both sides in one process, with the C library's default
handling of freed memory; since then the tutorial's loop runs in a process of its own. This times the
tutorial's loop both ways, in fresh processes that alternate (alone, shared, alone, shared):

- ``alone``: 3 epochs of the tutorial's loop;
- ``shared``: 3 epochs of the tutorial's loop, each after one epoch of `fit`'s (the switches `Speed.auto`
  cached), as the bench took turns before 07:00; freed memory is not kept (as then).

Prints the seconds of epochs 2 and 3 (epoch 1 is the warm-up, as in the bench). Run from the repository
root: ``python docs/bench-cpu-2026-12-03/tutorial_alone_or_shared.py`` (about 6 minutes).
"""

import subprocess
import sys
import time

MODEL = "cnn5x5"


def run(mode: str) -> None:
    from mnist_lab.speed.bench import make_trainer

    tutorial = make_trainer("tutorial", MODEL, "cpu")
    ours = make_trainer("tuned", MODEL, "cpu") if mode == "shared" else None
    seconds = []
    for _ in range(3):
        if ours is not None:
            ours.epoch()
        seconds.append(tutorial.timed_epoch())
    print(f"{mode:<7} tutorial loop epochs 2 and 3: {seconds[1]:.2f} s, {seconds[2]:.2f} s", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run(sys.argv[1])
    else:
        print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), flush=True)
        for mode in ("alone", "shared", "alone", "shared"):
            subprocess.run([sys.executable, __file__, mode], check=True)
