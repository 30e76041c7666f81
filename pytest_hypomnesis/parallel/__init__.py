"""Parallel GPU test runs: xdist workers pinned to GPUs, VRAM admission, a needs scheduler.

Imported only when one of ``--hypomnesis-pin-gpus``, ``--hypomnesis-admit`` or
``--hypomnesis-needs`` is given, so a session without them pays nothing.
"""
