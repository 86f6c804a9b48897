"""The from-scratch lessons: the maths of the series written out with plain tensor operations.

- `softmax`: softmax, cross-entropy and softmax regression by hand (notebook 02).
- `backprop`: the backward pass of T2's BP network by hand (notebook 04).
- `conv`: convolution and pooling by hand, the output-size formula, layer tables (notebooks 05-06).

These functions hold only the maths, with no input checks (micrograd's way): the
tests compare every one of them with PyTorch's own, which is the safety net.
"""
