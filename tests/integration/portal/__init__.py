"""The debtor portal through its HTTP routes, on every database."""
