"""Pre-publish scanning and proactive detection: hash-match banks (`banks/`), scan decisions."""
