"""A 2 × 2 max-pool three ways, forward and backward: PyTorch's kernel, a reshape and `amax`, two `max`es.

All three give the same forward values (checked). ms per forward + backward, fastest of three passes
of 30, for the first max-pool's input of the fast recipe, `convnet` and `keras_cnn` at their batch
sizes, channels-last or not, bfloat16 or float32. Run: ``python maxpool_variants.py``.
"""

import time

import torch
import torch.nn.functional as F

from mnist_lab.devices import keep_freed_memory


def pytorch(x):
    return F.max_pool2d(x, 2)


def reshape_amax(x):  # (N, C, H, W) -> (N, C, H/2, 2, W/2, 2) -> max over each 2 × 2 window
    h, w = x.shape[-2:]
    return x.unflatten(2, (h // 2, 2)).unflatten(4, (w // 2, 2)).amax((3, 5))


def two_maxes(x):  # rows first, then columns; each max keeps the index its backward needs
    h, w = x.shape[-2:]
    rows = x.unflatten(2, (h // 2, 2)).max(3).values
    return rows.unflatten(3, (w // 2, 2)).max(4).values


def ms(pool, x, grad, passes=3, n=30):
    for _ in range(3):
        pool(x).backward(grad)
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        for _ in range(n):
            x.grad = None
            pool(x).backward(grad)
        best = min(best, (time.perf_counter() - start) / n * 1000)
    return best


if __name__ == "__main__":
    keep_freed_memory()  # as fit does on a CPU
    print("input shape, layout, dtype: ms per forward + backward")
    for shape in [(256, 16, 28, 28), (64, 10, 26, 26), (32, 32, 26, 26)]:
        for layout, memory_format in (("channels_last", torch.channels_last), ("contiguous", torch.contiguous_format)):
            for dtype in (torch.bfloat16, torch.float32):
                x = torch.randn(shape, dtype=dtype).contiguous(memory_format=memory_format)
                x.requires_grad_(True)
                grad = torch.randn_like(pytorch(x))
                same = torch.equal(pytorch(x), reshape_amax(x)) and torch.equal(pytorch(x), two_maxes(x))
                times = "  ".join(f"{f.__name__} {ms(f, x, grad):.3f}" for f in (pytorch, reshape_amax, two_maxes))
                print(f"{shape} {layout:<13} {str(dtype)[6:]:<8}  {times}  (same forward: {same})")
