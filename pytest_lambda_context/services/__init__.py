"""What handlers talk to, usable without pytest: AWS under moto, Elasticsearch."""
