"""A real `ivr serve` on 127.0.0.1 with the real models, shared by the integration tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from .procs import ServerProcess, free_port

REPO = Path(__file__).parent.parent.parent
AUTH_TOKEN = "integration-test-token"
DASHBOARD_TOKEN = "integration-dashboard-token"


class Server(ServerProcess):
    """`ivr serve` with the real models, signed webhooks on, a dashboard token, calls recorded."""

    def __init__(self, tmp: Path, flows_dir: Path = REPO / "flows", env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp
        env = {
            **os.environ,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "IVR_DATA_DIR": str(tmp),
            "IVR_FLOWS_DIR": str(flows_dir),
            "IVR_DASHBOARD_TOKEN": DASHBOARD_TOKEN,
            "IVR_RECORDING": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        super().__init__(
            "ivr serve",
            [sys.executable, "-m", "ivr.tools.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            log_path=tmp / "server.log", ready_url=self.url + "/healthz", env=env, cwd=REPO,
        )

    def wait_ready(self, timeout: float = 600) -> None:
        super().wait_ready(timeout)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("server"))
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def caller_voice():
    from ivr.registry import voice_registry
    from ivr.speech.tts import Synthesizer

    return Synthesizer(voice_registry().for_role("default").path)


@pytest.fixture(scope="session")
def listener():
    """Whisper for transcribing what the bot said, as a person on the line would hear it."""
    from ivr.registry import model_registry
    from ivr.speech.stt import Transcriber

    return Transcriber(model_registry().for_role("stt").path)
