import sys

from loguru import logger

# pipecat logs every frame decision at DEBUG through loguru: keep the test output readable.
logger.remove()
logger.add(sys.stderr, level="WARNING")

# A real PostgreSQL server (pg_server, pg_database, store_url) for the call-log store tests;
# ast.parse made thread-safe on the Pythons where it is not, so a failure is reported as one.
pytest_plugins = ["tests.pg", "tests.ast_race"]
