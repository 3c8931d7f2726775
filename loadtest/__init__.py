"""Load tests: locust scenarios and shapes, a signature-checking webhook receiver, a runner."""
