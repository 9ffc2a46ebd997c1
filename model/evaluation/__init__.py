"""Evaluation: in situ stations, the evaluation against probes (skill metrics: model.metrics) and
its report."""
