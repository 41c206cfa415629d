"""The session's Elasticsearch: service, backends, the embedded stand-in and its store."""
