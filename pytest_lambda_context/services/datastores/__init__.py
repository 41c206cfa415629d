"""PostgreSQL, MySQL/MariaDB and Redis for tests: one module per datastore, one service class."""
