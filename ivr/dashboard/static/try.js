// "Try a call": talk to a flow (or a draft of it) with the microphone, through the phone line's own
// pipeline (ivr/serving/browser_routes.py), and watch each turn as it happens. The audio thread is
// line-worklet.js; the socket speaks Twilio's Media Streams protocol.
import { api, banner, el, liveFeed, topBar } from "./common.js";
import { addToTests, turnCard } from "./turns.js";

topBar("try");
const $ = (id) => document.getElementById(id);
const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];
const STREAM = "MZbrowser";

// What the page knows of its call, for people and for the tests and benchmark that drive it.
// Timings are taken as the phone simulator takes them (ivr/tools/simulate.py): from the caller's
// last frame of words sent (louder than -50 dBFS, where the simulator trims its caller's words) to
// the first frame of the reply received louder than -45 dBFS (its test for the bot's speech), and
// from `start` to the greeting.
const CALLER_LOUD = 10 ** (-50 / 20), BOT_LOUD = 10 ** (-45 / 20);
const state = window.ivrTry = {
  callId: null, phase: "idle", stats: {}, greetedMs: null, ended: null, replies: [],
  lateArrivals: 0, // the bot's audio came more than the server's lead late (its stalls, not the page's)
  bot: [], // the bot's audio as received: 8 kHz mu-law chunks, or 16 kHz 16-bit PCM when wideband
  wideband: false,
  botAudio() { // all of it, base64, for a test to transcribe
    let text = "";
    for (const chunk of this.bot) text += String.fromCharCode(...chunk);
    return btoa(text);
  },
};
let socket = null, context = null, mic = null, node = null, stopFeed = null, refresh = null;

function setPhase(phase, text) {
  state.phase = phase;
  const badge = $("call-state");
  badge.textContent = text;
  badge.className = "status " + ({ calling: "wait", on: "on" }[phase] || "off");
  const busy = phase === "calling" || phase === "on";
  $("call").disabled = busy;
  $("flow").disabled = busy;
  $("wideband").disabled = busy;
  $("hangup").disabled = !busy;
  for (const b of $("keypad").querySelectorAll("button")) b.disabled = phase !== "on";
}

async function loadFlows() {
  const select = $("flow");
  try {
    const { flows, drafts } = await api("/try/flows");
    const live = el("optgroup", { label: "Flows on the line" },
      flows.map((f) => el("option", { value: `flow:${f.name}` }, `${f.name} (${f.file}, v${f.version.slice(0, 8)})`)));
    const draft = el("optgroup", { label: "Drafts (*.draft.yaml)" }, drafts.map((d) => el("option",
      { value: `draft:${d.file}`, disabled: d.errors.length ? true : null, title: d.errors.join("\n") || null },
      `${d.file}${d.name ? ` (${d.name})` : ""}${d.errors.length ? ` – ${d.errors.length} error(s)` : ""}`)));
    select.replaceChildren(live, ...(drafts.length ? [draft] : []));
    const wanted = new URLSearchParams(location.search).get("flow");
    if (wanted) select.value = wanted.includes(":") ? wanted : `flow:${wanted}`;
  } catch (err) {
    banner(err.message);
  }
}

function b64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
  return btoa(text);
}

const MU_TABLE = (() => { // G.711 mu-law byte -> float
  const t = new Float32Array(256);
  for (let i = 0; i < 256; i++) {
    const u = ~i & 0xff;
    const exponent = (u >> 4) & 7, mantissa = u & 0x0f;
    let s = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    t[i] = (u & 0x80 ? -s : s) / 32768;
  }
  return t;
})();

function loud(frame, pcm16, threshold) { // mu-law bytes, or 16-bit samples
  let sum = 0;
  for (let i = 0; i < frame.length; i++) {
    const v = pcm16 ? frame[i] / 32768 : MU_TABLE[frame[i]];
    sum += v * v;
  }
  return frame.length > 0 && Math.sqrt(sum / frame.length) > threshold;
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

async function placeCall(event) {
  event.preventDefault();
  banner("");
  const [kind, name] = $("flow").value.split(/:(.*)/s);
  const wideband = $("wideband").checked;
  setPhase("calling", "calling…");
  state.callId = null; state.bot = []; cards = new Map(); state.greetedMs = null; state.ended = null; state.stats = {};
  state.replies = []; state.lateArrivals = 0; state.wideband = wideband;
  try {
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
  } catch (err) {
    setPhase("idle", "not on a call");
    banner(`The microphone is not available (${err.name}): allow it for this page. Browsers give it only to ` +
           "https:// pages and http://localhost.");
    return;
  }
  try {
    context = new AudioContext({ latencyHint: "interactive" });
    await context.audioWorklet.addModule("/dashboard/static/line-worklet.js");
    node = new AudioWorkletNode(context, "ivr-line", {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1], processorOptions: { wideband, playRate: wideband ? 16000 : 8000 } });
    context.createMediaStreamSource(mic).connect(node);
    node.connect(context.destination);
    await context.resume();
  } catch (err) {
    banner(`This browser cannot play the call (${err.name || err}): ${err.message || ""}`);
    finish("not on a call");
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const own = socket = new WebSocket(`${scheme}://${location.host}/dashboard/api/try/media`);
  const mine = (message) => { if (own.readyState === WebSocket.OPEN) own.send(JSON.stringify(message)); };
  let started = 0, spokeAt = null, answered = null, botLoudAt = -1e9;
  let aheadUntil = 0; // when the audio received so far would have played out, had it played at once
  node.port.onmessage = (e) => {
    if (e.data.type === "stats") state.stats = e.data.stats;
    else if (e.data.type === "frame" && state.callId) {
      const bytes = new Uint8Array(e.data.data);
      mine({ event: "media", streamSid: STREAM, media: { track: "inbound", payload: b64(bytes) } });
      if (loud(wideband ? new Int16Array(e.data.data) : bytes, wideband, CALLER_LOUD)) spokeAt = performance.now();
    }
  };
  own.onopen = () => {
    started = performance.now();
    send({ event: "connected", protocol: "Call", version: "1.0.0" });
    send({ event: "start", streamSid: STREAM, start: { streamSid: STREAM, callSid: "browser", customParameters: {
      [kind === "draft" ? "draft" : "flow"]: name, wideband: wideband ? "1" : "0" } } });
  };
  own.onmessage = (e) => {
    if (socket !== own) return; // a call that has ended: its last words are not this call's
    const m = JSON.parse(e.data);
    if (m.event === "media") {
      const bytes = Uint8Array.from(atob(m.media.payload), (c) => c.charCodeAt(0));
      // 8 kHz mu-law, one byte a sample; or, wideband, 16 kHz 16-bit little-endian PCM
      const audio = wideband ? new Int16Array(bytes.buffer, 0, bytes.length >> 1) : bytes;
      const arrived = performance.now();
      if (arrived > aheadUntil + 20 && arrived - aheadUntil < 500 && aheadUntil > 0) state.lateArrivals += 1;
      aheadUntil = Math.max(aheadUntil, arrived) + audio.length / (wideband ? 16 : 8);
      if (loud(audio, wideband, BOT_LOUD)) {
        const now = performance.now();
        if (state.greetedMs === null) state.greetedMs = now - started;
        const newUtterance = now - botLoudAt > 500;
        if (newUtterance && spokeAt !== null && spokeAt !== answered) { answered = spokeAt; state.replies.push(now - spokeAt); }
        botLoudAt = now;
      }
      state.bot.push(bytes);
      const samples = new Float32Array(audio.length);
      for (let i = 0; i < audio.length; i++) samples[i] = wideband ? audio[i] / 32768 : MU_TABLE[audio[i]];
      node.port.postMessage({ type: "play", samples }, [samples.buffer]);
    } else if (m.event === "clear") {
      node.port.postMessage({ type: "clear" });
    } else if (m.event === "call") {
      state.callId = m.callSid;
      setPhase("on", "on a call");
      $("call-info").replaceChildren(`Call `, el("a", { href: `/dashboard/calls/${m.callSid}` }, m.callSid),
        ` on ${m.flow} v${m.version.slice(0, 8)}${m.draft ? ` (draft ${m.draft})` : ""}`,
        m.wideband ? " · wideband" : " · as on a phone (8 kHz mu-law)");
      followTurns(m.callSid);
    } else if (m.event === "transfer") {
      banner(`Transfer to ${m.target} (${m.reason}): not dialled on a test call.` +
             (m.summary ? ` The agent would hear: “${m.summary}”` : ""), "info");
    } else if (m.event === "error") {
      banner([m.message, ...(m.errors || [])].join("\n"));
    }
  };
  own.onclose = (e) => {
    if (socket !== own) return;
    state.ended = { code: e.code, reason: e.reason };
    finish(e.code === 1000 || e.code === 1005 ? "call ended" : `call ended (${e.reason || e.code})`);
  };
}

function finish(text) {
  // The microphone stops now (its frames must not reach a next call); the bot's last words play
  // out before the sound goes.
  const ctx = context, tracks = mic, last = node;
  if (last) last.port.onmessage = (e) => { if (e.data.type === "stats") state.stats = e.data.stats; };
  if (tracks) tracks.getTracks().forEach((t) => t.stop());
  setTimeout(() => { if (last) last.disconnect(); if (ctx) ctx.close(); }, 1500);
  context = null; mic = null; socket = null; node = null;
  setPhase("ended", text);
  if (state.callId) loadTurns(state.callId);
  const feed = stopFeed; // this call's feed, not the next one's
  setTimeout(() => { if (feed) feed(); if (stopFeed === feed) stopFeed = null; }, 5000);
}

function hangUp() {
  send({ event: "stop", streamSid: STREAM, stop: { callSid: state.callId } });
  if (socket) socket.close(1000, "hung up");
}

let cards = new Map(); // turn index -> { json, card }: a card that has not changed is kept as it is (with
// what its "Add to tests" said)

async function loadTurns(callId) {
  try {
    const call = await api(`/calls/${encodeURIComponent(callId)}`);
    if (callId !== state.callId) return;
    const next = new Map();
    for (const turn of call.turns) {
      const json = JSON.stringify(turn), known = cards.get(turn.index);
      next.set(turn.index, known && known.json === json ? known : { json, card: turnCard(turn, addToTests(callId)) });
    }
    cards = next;
    $("turns").replaceChildren(...(call.turns.length ? [...next.values()].reverse().map((c) => c.card)
      : [el("div", { class: "panel empty" }, "Waiting for the greeting…")]));
  } catch (err) {
    if (!/404/.test(err.message)) banner(err.message);
  }
}

function followTurns(callId) {
  if (stopFeed) stopFeed();
  loadTurns(callId);
  stopFeed = liveFeed((m) => {
    if (m.call_id !== callId || refresh) return;
    refresh = setTimeout(() => { refresh = null; loadTurns(callId); }, 300);
  }, () => {});
}

$("keypad").replaceChildren(...KEYS.map((k) => {
  const b = el("button", { type: "button", "data-key": k, disabled: true }, k);
  b.addEventListener("click", () => send({ event: "dtmf", streamSid: STREAM, dtmf: { track: "inbound_track", digit: k } }));
  return b;
}));
$("place").addEventListener("submit", placeCall);
$("hangup").addEventListener("click", hangUp);
setPhase("idle", "not on a call");
loadFlows();
