"""Evaluation: in situ stations, skill metrics, the evaluation against probes and its report."""
