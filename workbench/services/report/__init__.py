"""EU DSA reporting: enforcement decisions, appeals, statements of reasons, transparency report."""
