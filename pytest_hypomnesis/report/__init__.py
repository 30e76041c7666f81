"""Reports: the JSON ``schema``, the summary ``table``, the ``terminal`` section, ``compare``
(the baseline gate), ``junit`` properties and the ``html`` page; ``atomicfile`` writes them."""
