"""``opswatch bench``: throughput, latency and memory against the real local broker,
each quoted beside the limit of the same machine measured in the same run."""
