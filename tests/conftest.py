import sys

from loguru import logger

# pipecat logs every frame decision at DEBUG through loguru: keep the test output readable.
logger.remove()
logger.add(sys.stderr, level="WARNING")
