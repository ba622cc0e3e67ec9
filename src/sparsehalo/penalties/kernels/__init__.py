"""The fast paths of the penalties: fused value-and-gradient kernels.

- :mod:`.fused`: the machinery: runs a kernel (compiled with ``torch.compile`` where possible) and
  hands its gradients to autograd;
- :mod:`.elementwise`: the kernels of HALO, L1, SWS, MCP and SCAD, written out by hand;
- :mod:`.native`: HALO's C++ pass on the CPU (``csrc/halo_cpu.cpp``, built on first use), and
  :func:`~.native.halo_kernel_for`, which picks it where it applies.
"""
