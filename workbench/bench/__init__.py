"""Benchmarks: one module per benchmark, driving the services and writing results to benchmarks/;
shared here are the results file, the one percentile (stats) and synthetic media. No service
imports this package."""
