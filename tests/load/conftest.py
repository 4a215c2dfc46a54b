import os

# The load test saturates the machine for minutes: only `make loadtest` (IVR_LOADTEST=1) runs it.
if not os.environ.get("IVR_LOADTEST"):
    collect_ignore = ["test_loadtest.py"]
