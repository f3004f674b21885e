"""`evaluate` modules shipped with pixeltok; load them with ``pixeltok.evaluation.load_metric(name)``."""
