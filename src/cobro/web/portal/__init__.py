"""The debtor portal: the page a claim's signed link opens, and what a debtor can do there."""
