"""Benchmarks that measure the IdP over HTTP and print ratios against baselines taken in the same run."""
