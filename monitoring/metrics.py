"""Prometheus gauges of the latest monitoring reports (labels are dimension names and alert kinds, never ids)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

DRIFT_SHARE = Gauge("ecg_drift_share", "Share of monitored features flagged as drifted by the latest drift report",
                    multiprocess_mode="mostrecent")
PARITY_RATIO = Gauge("ecg_fairness_parity_ratio",
                     "Demographic parity ratio of urgent recommendations in the latest fairness report",
                     ["dimension"], multiprocess_mode="mostrecent")
EQUAL_OPPORTUNITY_DIFFERENCE = Gauge(
    "ecg_fairness_equal_opportunity_difference",
    "Largest difference in true-positive rate between groups (reviewed results), latest fairness report",
    ["dimension"], multiprocess_mode="mostrecent")
ALERTS = Counter("ecg_monitoring_alerts_total", "Monitoring alerts raised", ["kind"])
