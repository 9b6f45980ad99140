"""Label quality: agreement between reviewers, and training labels aggregated from them."""
