"""Evidence: the hash chain over claims and deliveries, and the claim history."""
