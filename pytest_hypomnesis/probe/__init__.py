"""Where readings are taken. ``chain`` is the one place that chooses among the backends (one
module each: ``rss``, ``nvml``, ``smi``, ``dxgi``, ``pdh``, ``metal``); every backend function
either returns a value or raises ``BackendFailure(backend, reason)``. ``rampeak`` is the RAM
peak meter, ``spill`` the Windows spill tracker, ``fake`` the in-process fake GPU."""
