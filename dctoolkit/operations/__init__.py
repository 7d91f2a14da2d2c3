"""Running dctoolkit as a lab's service: metrics for Prometheus, the scheduler's pass statistics, retention."""
