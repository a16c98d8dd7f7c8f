"""Which layer gets which bits: per-layer sensitivity, the Gumbel-softmax supernet and the
``usmlite-edu search`` pipeline (:mod:`~usmlite_edu.search.pipeline`)."""
