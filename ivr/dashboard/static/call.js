// One call: facts, recording, and turn by turn what was said, understood and how fast.
import { api, banner, el, fmtDuration, fmtTime, liveFeed, outcomePill, topBar } from "./common.js";
import { addToTests, turnCard } from "./turns.js";

topBar("calls");
const callId = decodeURIComponent(location.pathname.split("/").pop());
document.getElementById("title").textContent = `Call ${callId}`;
document.title = `Call ${callId} · ivr`;
let liveStarted = false;

function facts(call) {
  const pairs = [
    ["Flow", `${call.flow} (v${(call.flow_version || "").slice(0, 8)})`], call.meta?.channel === "browser"
      ? ["Caller", `browser test call by ${call.meta.operator || "an operator"}${call.meta.wideband ? " (wideband)" : ""}${call.meta.flow_file ? `, draft ${call.meta.flow_file}` : ""}`]
      : ["Caller", `${call.caller || "unknown"} → ${call.called || "–"}`],
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
  turns.replaceChildren(...(call.turns.length ? call.turns.map((t) => turnCard(t, addToTests(callId))) : [el("div", { class: "panel empty" }, "Nothing happened on this call yet.")]));
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
