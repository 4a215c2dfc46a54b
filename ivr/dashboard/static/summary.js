// Summary: containment, escalations, latency percentiles and volume for a period.
import { api, banner, el, fmtDuration, qs, topBar } from "./common.js";
import { barChart, columnChart } from "./charts.js";

topBar("summary");
const form = document.getElementById("range");
const STAGE_NAMES = { endpoint: "end-of-turn silence", to_transcript: "end of speech → transcript", stt: "speech recognition",
  nlu: "understanding (NLU)", to_first_audio: "→ first audio", voice_to_voice: "voice to voice",
  keypad_to_first_audio: "keypad → first audio" };

function card(label, value, hint) {
  return el("div", { class: "card" }, el("div", { class: "k" }, label), el("div", { class: "v" }, value), hint ? el("div", { class: "muted small" }, hint) : null);
}

function empty(text) {
  return el("div", { class: "empty small" }, text);
}

async function load() {
  const period = form.elements.period.value;
  const now = Math.floor(Date.now() / 1000);
  const since = period === "all" ? null : now - Number(period);
  const bucket = period === "86400" ? 3600 : 86400;
  let s;
  try {
    s = await api("/summary" + qs({ since, until: period === "all" ? null : now + 1, flow: form.elements.flow.value, bucket_s: bucket }));
    banner("");
  } catch (err) {
    banner(err.message);
    return;
  }
  const rate = s.containment_rate === null ? "–" : `${Math.round(s.containment_rate * 100)}%`;
  document.getElementById("cards").replaceChildren(
    card("Calls", s.calls, `${s.active} in progress` + (s.test_calls ? ` · ${s.test_calls} browser test call${s.test_calls > 1 ? "s" : ""} not counted` : "")),
    card("Containment", rate, s.ended
      ? `${s.contained} of ${s.ended} ended calls stayed with the bot` + (s.failed ? ` · ${s.failed} broke (error, stalled, crash)` : "")
      : "no ended calls"),
    card("Escalations", Object.values(s.escalations).reduce((a, b) => a + b, 0)),
    card("Minutes", s.minutes < 10 ? s.minutes.toFixed(1) : Math.round(s.minutes), s.ended ? `avg ${fmtDuration((s.minutes * 60) / s.ended)} a call` : null),
    card("Model tokens", s.tokens.slm + s.tokens.llm, `SLM ${s.tokens.slm} · LLM ${s.tokens.llm}`));

  const label = (t) => {
    const d = new Date(t * 1000);
    return bucket < 86400 ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : d.toLocaleDateString([], { month: "short", day: "numeric" });
  };
  document.getElementById("volume").replaceChildren(s.volume.some((v) => v.calls)
    ? columnChart(s.volume.map((v) => ({ t: v.t, value: v.calls })), { title: "calls over time", label }) : empty("No calls in this period."));
  const outcomes = Object.entries(s.outcomes).map(([k, v]) => ({ label: k.replaceAll("_", " "), value: v }));
  document.getElementById("outcomes").replaceChildren(outcomes.length ? barChart(outcomes, { title: "outcomes" }) : empty("No ended calls in this period."));
  const escalations = Object.entries(s.escalations).map(([k, v]) => ({ label: k, value: v }));
  document.getElementById("escalations").replaceChildren(escalations.length
    ? barChart(escalations, { title: "escalations", series: [{ key: "value", color: "#d97706" }] }) : empty("No escalations in this period."));
  const stages = Object.entries(s.latency_ms).filter(([k]) => k in STAGE_NAMES)
    .sort(([a], [b]) => Object.keys(STAGE_NAMES).indexOf(a) - Object.keys(STAGE_NAMES).indexOf(b))
    .map(([k, v]) => ({ label: `${STAGE_NAMES[k]} (n=${v.n})`, p50: v.p50, p95: v.p95 }));
  document.getElementById("latency").replaceChildren(stages.length
    ? barChart(stages, { unit: "ms", title: "latency", labelW: 230, series: [{ key: "p50", color: "#60a5fa", label: "p50" }, { key: "p95", color: "#1e3a8a", label: "p95" }] })
    : empty("No turns with latencies in this period."));
}

api("/options").then((o) => {
  for (const f of o.flows) form.elements.flow.append(el("option", { value: f }, f));
}).catch((err) => banner(err.message));
form.addEventListener("change", load);
form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
load();
