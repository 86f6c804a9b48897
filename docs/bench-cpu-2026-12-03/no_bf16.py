"""`mnist-lab bench` on this CPU as `Speed.auto` would treat a CPU without native bfloat16.

Patches `bf16_supported` to False where the speed decision and the bench look it up, so
bfloat16 autocast is never a candidate; everything else is the plain `mnist-lab bench`.
A proxy only: the float32 kernels are this AVX-512 CPU's, faster than an AVX2 laptop's.
Run: python docs/bench-cpu-2026-12-03/no_bf16.py --device cpu --models ... --out DIR
"""

import sys

from mnist_lab import cli
from mnist_lab.speed import bench, decide

decide.bf16_supported = bench.bf16_supported = lambda device: False
if __name__ == "__main__":  # the bench starts the tutorial's loop in a fresh process, which imports this file
    sys.exit(cli.main(["bench", *sys.argv[1:]]))
