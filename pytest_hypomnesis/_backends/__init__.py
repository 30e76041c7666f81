"""One private module per data source. ``pytest_hypomnesis._probe`` is the one place that
chooses among them; every backend function either returns a value or raises
``BackendFailure(backend, reason)``."""
