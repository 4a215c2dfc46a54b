"""Server settings: one documented dataclass, read from `ivr.toml` and then `IVR_*` variables.

Precedence: command-line flags > environment > `ivr.toml` (path in IVR_CONFIG, default
./ivr.toml) > the defaults below. Twilio's credentials keep Twilio's own variable names.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ivr.registry import REPO_ROOT


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    """Base URL Twilio reaches us at (https://bot.example.com). Used for the media-stream URL in
    TwiML and for checking X-Twilio-Signature; without it both come from the request's Host."""

    dev_mode: bool = False
    """Accept unsigned webhooks. Only for local testing: anyone could start calls."""

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    """Checks X-Twilio-Signature; with the account SID it also enables transfers (REST)."""

    secret: str | None = None
    """Signs per-call stream tokens. Defaults to the auth token; in dev mode a random one."""

    flows_dir: Path = REPO_ROOT / "flows"
    default_flow: str = "customer_service"
    data_dir: Path = Path("data")
    database_url: str | None = None
    """IVR_DATABASE_URL: postgresql://user:password@host/db (several instances may share one), or
    sqlite:///path or a plain path; default <data_dir>/ivr.sqlite3."""

    max_calls: int = 20
    """Concurrent calls this process accepts; more get TwiML saying the line is busy."""
    max_call_seconds: int = 1800
    drain_seconds: float = 30.0
    """On SIGTERM: seconds calls in progress get to finish (new ones hear "busy", /healthz says
    draining); then each hears a short goodbye and is hung up, and the process exits."""
    stream_token_ttl: int = 300

    # Hostile input and floods (issue #9; the cost model is in ivr/telephony/guard.py).
    trusted_proxies: str | None = None
    """Peers whose X-Forwarded-For (and X-Forwarded-Proto) is believed: comma-separated addresses
    or CIDRs, `*` for any. Unset: uvicorn's own FORWARDED_ALLOW_IPS if set, else loopback, since
    behind nginx on the same host the peer is 127.0.0.1 and without trusting it every caller
    would look like one source. Set it to your proxy's network when the proxy runs elsewhere
    (another container, an ingress); per-source limits count the proxy itself otherwise."""
    webhook_rate_per_source: float | None = None
    """New calls a second one source may start (a token bucket, burst `webhook_burst_per_source`),
    beyond that the TwiML says the line is busy. Unset: 5 where webhooks are not
    signature-checked (dev mode) and off for signed ones, which come from Twilio's shared
    addresses (a per-source cap would throttle Twilio itself). 0 turns it off everywhere."""
    webhook_burst_per_source: int = 20
    max_media_sockets: int | None = None
    """Media websockets open at once, calls and sockets that have not sent `start` yet alike;
    more are closed with 1013 (try again later). Unset: max_calls + 20."""
    max_waiting_sockets_per_source: int = 10
    """Media websockets from one source that have not sent `start` yet. Twilio sends `start`
    within milliseconds of connecting, so only sockets that sit idle pile up here."""
    media_start_timeout: float = 10.0
    """Seconds a new media websocket gets to send `start`."""
    media_stall_seconds: float = 10.0
    """A started stream that sends nothing for this long is ended (outcome `stalled`): Twilio
    sends a media frame every 20 ms for the whole call, silence included."""

    stt_device: str = "cpu"
    stt_compute_type: str = "int8"
    stt_threads: int = 2
    stt_beam_size: int = 1
    stt_window_secs: float = 15.0
    """Whisper's encoder window floor: the utterance + 1 s, at least this (0: always the full
    30 s window). Digit answers always get the full window (ivr/speech/stt.py says why)."""
    slm_enabled: bool = True
    """Ask the small language model when the example router is unsure."""
    slm_device: str = "cpu"
    slm_threads: int = 1
    """llama.cpp threads whenever anything else on the machine is runnable. 1, not 2, on a 2-core
    machine: with STT or another call busy on the other core, 2 threads spin-wait on each other
    and a 0.6 s turn took 6-9 s (measured)."""
    slm_max_threads: int = 2
    """llama.cpp threads for a turn while the machine's other cores are idle (read from
    /proc/loadavg before each 16-token chunk): 2 threads make a turn 1.6x faster on an idle
    2-core machine. Set it to IVR_SLM_THREADS to pin the count."""
    slm_budget_ms: int = 1000
    """The SLM's time on one turn; past it the router's answer stands. On this 2-core CPU the
    SLM step measured p50 ~0.8 s / p95 ~1.2 s on Banking77-length queries, seconds under load."""
    nlu_threads: int = 1
    nlu_mode: str = "hybrid"
    """`hybrid` (example router, SLM for the unsure turns), `router` (no SLM), or `toolcall`: the
    pipecat.flows way, one LLM tool call per turn on the same GGUF. `toolcall` is the baseline
    `ivr bench calls` compares against, not something to run a line on."""

    llm_base_url: str | None = None
    """An OpenAI-compatible endpoint for `handoff: llm` nodes (OpenAI, vLLM, llama.cpp's
    server). Without it, a handoff apologises and returns to the flow."""
    llm_model: str = "local"
    llm_api_key: str = "none"
    llm_first_token_timeout: float = 4.0
    llm_timeout: float = 8.0
    llm_system_prompt: str | None = None
    """Business facts and tone for the LLM (opening hours, policies), added to every handoff."""
    llm_filler_after: float = 1.2
    """Seconds without a first word from the LLM before the caller hears `llm_filler_say`."""
    llm_filler_say: str = "One moment while I look into that."
    llm_max_turns: int = 6

    escalation: dict = field(default_factory=dict)
    """Server-wide defaults for every flow's `escalation:` block, same keys (ivr.toml's
    [escalation] table, or IVR_ESCALATION as JSON); a flow's own values win."""
    transfer_target: str | None = None
    """Where calls go for a person when the flow names none (no `transfer` node)."""
    twilio_api_url: str | None = None
    """Twilio's REST API base URL (default https://api.twilio.com); tests point it elsewhere."""

    warm_up: bool = True
    """Place one call with nobody on the line at start-up, before taking requests, so the first
    caller is greeted as fast as the next ones (ivr/media/warmup.py)."""

    vad_stop_secs: float = 0.5
    """Silence that ends a caller's turn; longer while digits, phones or emails are read."""
    vad_stop_secs_long: float = 1.0
    vad_stop_secs_number: float = 2.0
    """Silence that ends a turn whose words so far are the start of the number the node
    collects, with digits still to come: callers pause between a card's groups."""
    vad_stop_secs_unfinished: float = 1.0
    """Silence that ends a turn whose words stop mid-phrase ("I'd like to check on ..."):
    callers pause 0.3-0.5 s for the word they are looking for."""
    vad_pause_secs: float = 0.2
    """Silence after which whisper starts on the words so far (kept if the turn then ends,
    dropped if the caller goes on): the rest of the end-of-turn silence overlaps whisper."""
    early_answer_confidence: float = 0.9
    """A menu request heard at the first pause (`vad_pause_secs`) is answered then, without
    waiting out `vad_stop_secs`, when the NLU settles it with at least this calibrated confidence
    and the words do not stop mid-phrase; a caller who goes on is heard whole (docs/latency.md,
    "Answering at the first pause"). 0 turns it off."""
    vad_confidence: float = 0.7
    vad_start_secs: float = 0.1
    """Speech before the VAD says the caller started. 0.2 s missed a short "yes" (0.3 s long)."""
    barge_in_after_secs: float = 0.6
    """The caller must talk over a prompt this long, or say real words, to stop it: "mhm" and
    "okay" do not. 0 stops the prompt at the first sound the VAD hears."""

    audio_lead_secs: float = 0.3
    """How far ahead of the caller's ear the bot's audio is sent (Twilio buffers it and drops it
    on barge-in). 0: pipecat's pacing, one 40 ms chunk ahead, where a stall of the server under
    load cut words (2-4 underruns in 8 calls at 4 at once; none with 0.3, docs/latency.md)."""

    log_level: str = "INFO"
    log_json: bool = False

    dashboard_token: str | None = None
    """Logs operators into /dashboard (and is the API's Bearer token). Unset: a random one is
    made at start and logged once."""

    recording: bool = False
    """Record both legs of every call to a stereo WAV (left caller, right bot). Off by default:
    recordings hold raw audio, including anything callers say aloud."""
    recording_dir: Path | None = None
    """Default <data_dir>/recordings."""
    recording_retention_days: int = 30
    """Recordings older than this are deleted at start-up and daily (0 keeps them forever)."""

    def with_overrides(self, **values) -> "Settings":
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def trusted_proxy_list(self, env=os.environ) -> str:
        if self.trusted_proxies is not None:
            return self.trusted_proxies
        return env.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

    @property
    def media_sockets_limit(self) -> int:
        return self.max_media_sockets if self.max_media_sockets is not None else self.max_calls + 20

    def webhook_rate(self, signed: bool) -> float:
        if self.webhook_rate_per_source is not None:
            return self.webhook_rate_per_source
        return 0.0 if signed else 5.0

    @property
    def database(self) -> str:
        return self.database_url or str(Path(self.data_dir) / "ivr.sqlite3")

    @property
    def recordings_path(self) -> Path:
        return Path(self.recording_dir) if self.recording_dir else Path(self.data_dir) / "recordings"


_BOOL_TRUE = {"1", "true", "yes", "on"}


def _coerce(kind: str, raw):
    if "dict" in kind and isinstance(raw, str):
        import json

        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"expected a JSON object, got {raw[:40]!r}: {exc}") from None
    if isinstance(raw, str):
        if "bool" in kind:
            return raw.strip().lower() in _BOOL_TRUE
        if "int" in kind and "float" not in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
        if "Path" in kind:
            return Path(raw)
    if "Path" in kind and raw is not None and not isinstance(raw, Path):
        return Path(raw)
    return raw


def load_settings(config_file: str | Path | None = None, env: dict | None = None) -> Settings:
    env = os.environ if env is None else env
    values: dict = {}
    path = Path(config_file or env.get("IVR_CONFIG", "ivr.toml"))
    if path.exists():
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        values.update(data.get("server", data))
        if "server" in data and "escalation" in data:
            values["escalation"] = data["escalation"]
    kinds = {f.name: str(f.type) for f in fields(Settings)}
    for name in kinds:
        key = f"IVR_{name.upper()}"
        if key in env:
            values[name] = env[key]
    if "TWILIO_AUTH_TOKEN" in env and "twilio_auth_token" not in values:
        values["twilio_auth_token"] = env["TWILIO_AUTH_TOKEN"]
    if "TWILIO_ACCOUNT_SID" in env and "twilio_account_sid" not in values:
        values["twilio_account_sid"] = env["TWILIO_ACCOUNT_SID"]
    unknown = set(values) - set(kinds)
    if unknown:
        raise ValueError(f"{path}: unknown settings {sorted(unknown)}")
    settings = Settings(**{k: _coerce(kinds[k], v) for k, v in values.items()})
    _check_escalation(settings.escalation, path)
    return settings


def _check_escalation(value, path: Path) -> None:
    """The [escalation] defaults take the flow file's keys: check them the same way, at start."""
    from pydantic import ValidationError

    from ivr.dialog.schema import Escalation

    try:
        Escalation.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path} [escalation] (or IVR_ESCALATION): {problems}") from None
