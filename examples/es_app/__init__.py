"""Example Lambda functions that use Elasticsearch, good and bad (see examples/tests/test_es_*.py)."""
