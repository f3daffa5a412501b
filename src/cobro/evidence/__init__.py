"""Evidence: the hash chain over claims, deliveries and answers, its checks, the history
and the per-debtor evidence pack."""
