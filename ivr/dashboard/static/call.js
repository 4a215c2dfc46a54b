// One call: facts, recording, and turn by turn what was said, understood and how fast.
import { api, banner, confidenceBar, el, fmtDuration, fmtMs, fmtTime, liveFeed, outcomePill, topBar } from "./common.js";
import { waterfall } from "./charts.js";

topBar("calls");
const callId = decodeURIComponent(location.pathname.split("/").pop());
document.getElementById("title").textContent = `Call ${callId}`;
document.title = `Call ${callId} · ivr`;
let liveStarted = false;

function facts(call) {
  const pairs = [
    ["Flow", `${call.flow} (v${(call.flow_version || "").slice(0, 8)})`], ["Caller", `${call.caller || "unknown"} → ${call.called || "–"}`],
    ["Started", fmtTime(call.started_at)], ["Duration", call.ended_at ? fmtDuration(call.duration) : "in progress"],
    ["Outcome", outcomePill(call.outcome)], ["Reason", call.summary?.reason || "–"],
    ["Last node", call.last_node || "–"], ["Escalations", call.escalations.length ? call.escalations.map((e) => e.reason || e.trigger || e.target).join(", ") : "none"],
  ];
  return el("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function audio(call) {
  const rec = call.recording;
  if (!rec) return el("p", { class: "muted small" }, call.ended_at ? "This call was not recorded." : "");
  if (!rec.available) return el("p", { class: "muted small" }, "The recording file is not available (deleted by retention, or still being written).");
  return el("div", { class: "panel", id: "recording" },
    el("audio", { controls: true, preload: "metadata", src: `/dashboard/api/calls/${encodeURIComponent(call.call_id)}/recording` }),
    el("div", { class: "muted small" }, `${fmtDuration(rec.duration_s)} · left: caller, right: bot`,
      rec.paused_s ? ` · ${fmtDuration(rec.paused_s)} silenced while a sensitive answer was collected` : ""));
}

function turnCard(turn) {
  const left = [];
  if (turn.caller) left.push(el("div", { class: "say caller" }, el("b", {}, "caller"), turn.caller));
  if (turn.noise) left.push(el("div", { class: "meta" }, `${turn.noise} noise-only utterance${turn.noise > 1 ? "s" : ""} ignored`));
  if (turn.nlu) {
    const n = turn.nlu;
    left.push(el("div", { class: "meta nlu" }, "intent ", el("b", {}, n.intent ?? "none"), " ",
      typeof n.confidence === "number" ? `${Math.round(n.confidence * 100)}%` : "", confidenceBar(n.confidence),
      ` via ${n.source ?? "?"}`, n.latency_ms != null ? ` in ${fmtMs(n.latency_ms)}` : "",
      n.ranked && n.ranked.length > 1 ? el("span", { class: "small" }, ` · next: ${n.ranked.slice(1).map(([i, s]) => `${i} ${Math.round(s * 100)}%`).join(", ")}`) : ""));
  }
  for (const node of turn.nodes) left.push(el("div", { class: "meta" }, "→ node ", el("span", { class: "pill live" }, node)));
  for (const slot of turn.slots) left.push(el("div", { class: "meta" }, `slot ${slot.name} = ${JSON.stringify(slot.value)}`,
    slot.heard ? el("span", { class: "small" }, ` · said in passing, found by the ${slot.heard}`) : ""));
  for (const a of turn.actions) left.push(el("div", { class: "meta" }, `${a.method} ${a.url} → ${a.ok ? "ok" : "failed"} ${a.status ?? ""} (${fmtMs(a.latency_ms)})`));
  const felt = signalsOf(turn.nlu);
  if (felt) left.push(el("div", { class: "meta small" }, `signals: ${felt}`));
  for (const e of turn.escalations) left.push(el("div", { class: "meta" }, el("span", { class: "pill warn" }, e.type),
    ` ${e.trigger ? e.trigger + ": " : ""}${e.reason || ""} ${e.target ? "→ " + e.target : ""}`));
  for (const p of turn.prompts) left.push(el("div", { class: "say bot" }, el("b", {}, p.kind === "prompt" ? "bot" : `bot · ${p.kind}`), p.text));
  for (const err of turn.errors) left.push(el("div", { class: "meta" }, el("span", { class: "pill bad" }, "error"), ` ${err.stage}: ${err.error || err.message || ""}`));
  const right = turn.waterfall.length
    ? [el("div", { class: "meta" }, "Latency from the end of the caller's speech"), waterfall(turn.waterfall)]
    : [el("div", { class: "meta" }, turn.index === 0 ? "Greeting" : "No latency recorded for this turn")];
  const title = { greeting: "Greeting", speech: "Spoken turn", dtmf: "Keypad turn", no_input: "No input" }[turn.kind] || turn.kind;
  return el("section", { class: "turn", "data-turn": turn.index },
    el("h3", {}, `${turn.index}. ${title}`, el("span", { class: "small" }, `+${turn.at_s.toFixed(1)} s`),
      turn.barge_in ? el("span", { class: "pill warn" }, "caller barged in") : "",
      turn.early ? el("span", { class: "pill" }, "ended at the first pause") : "",
      turn.withdrawn ? el("span", { class: "pill warn" }, "withdrawn: the caller went on") : "",
      turn.joined ? el("span", { class: "pill" }, "joined with the turn before") : ""),
    el("div", {}, left), el("div", {}, right));
}

function eventsTable(events, start) {
  return el("table", { class: "small" }, el("tbody", {}, events.map((e) => el("tr", {},
    el("td", { class: "num" }, `+${(e.ts - start).toFixed(2)} s`), el("td", {}, e.type),
    el("td", { class: "mono" }, JSON.stringify(e.data))))));
}

async function load() {
  let call;
  try {
    call = await api(`/calls/${encodeURIComponent(callId)}`);
    banner("");
  } catch (err) {
    banner(err.message);
    return;
  }
  document.getElementById("state").replaceChildren(outcomePill(call.outcome));
  document.getElementById("facts").replaceChildren(facts(call));
  document.getElementById("audio").replaceChildren(audio(call));
  const turns = document.getElementById("turns");
  turns.replaceChildren(...(call.turns.length ? call.turns.map(turnCard) : [el("div", { class: "panel empty" }, "Nothing happened on this call yet.")]));
  document.getElementById("events").replaceChildren(eventsTable(call.events, call.started_at));
  if (!call.ended_at && !liveStarted) {
    liveStarted = true;  // follow it: reload (at most twice a second) whenever it changes
    let pending = null;
    liveFeed((m) => {
      if (m.call_id !== callId || pending) return;
      pending = setTimeout(() => { pending = null; load(); }, m.kind === "call_end" ? 800 : 500);
    }, () => {});
  }
}

load();

// The escalation signals worth a look on a turn (a score of 0.3 or more), strongest first.
function signalsOf(nlu) {
  const s = nlu && nlu.signals;
  if (!s) return "";
  const named = { frustration: "upset", multiple_requests: "several requests", complaint: "complaint", policy_question: "policy question" };
  const shown = Object.entries(named).filter(([k]) => typeof s[k] === "number" && s[k] >= 0.3)
    .sort(([a], [b]) => s[b] - s[a]).map(([k, label]) => `${label} ${Math.round(s[k] * 100)}%`);
  return shown.join(", ");
}
