"""bfloat16 training steps, glibc's default against freed memory kept, in more processes than page_faults.py.

Five fresh processes per setting, the two settings taking turns; the child is `page_faults.CHILD`
with its "bf16-cl" way (bfloat16, channels-last, fused, pool_first where it applies).
Run from the repository root: python docs/bench-cpu-2026-12-03/page_faults_bf16.py keras_cnn convnet examples_cnn
"""

import statistics
import subprocess
import sys

sys.path.insert(0, "docs/bench-cpu-2026-12-03")
from page_faults import CHILD

for name in sys.argv[1:]:
    runs = {"default": [], "kept": []}
    for _ in range(5):
        for memory in runs:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, name, "bf16-cl", memory], capture_output=True, text=True, check=True
            ).stdout.split()
            runs[memory].append(float(out[0]))
    print(name, {k: (round(statistics.median(v), 2), [round(x, 2) for x in v]) for k, v in runs.items()}, flush=True)
