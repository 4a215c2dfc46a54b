// One turn of a call as a card: what the caller said or keyed, what the line understood, where
// the flow went, what the bot said, and the latency waterfall. The call page and "Try a call"
// both show turns this way; `actions(turn)` adds controls of the page's own (e.g. "Add to tests").
import { api, confidenceBar, el, fmtMs } from "./common.js";
import { waterfall } from "./charts.js";

export function turnCard(turn, actions = null) {
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
    el("div", {}, left), el("div", {}, right, actions ? actions(turn) : ""));
}

// The escalation signals worth a look on a turn (a score of 0.3 or more), strongest first.
function signalsOf(nlu) {
  const s = nlu && nlu.signals;
  if (!s) return "";
  const named = { frustration: "upset", multiple_requests: "several requests", complaint: "complaint", story_question: "story with a question", policy_question: "policy question" };
  const shown = Object.entries(named).filter(([k]) => typeof s[k] === "number" && s[k] >= 0.3)
    .sort(([a], [b]) => s[b] - s[a]).map(([k, label]) => `${label} ${Math.round(s[k] * 100)}%`);
  return shown.join(", ");
}

// "Add to tests": keeps the call's turns up to this one as an `ivr test` case in the flow's tests
// file (ivr/conversation/flow_test_cases.py), and says where it went or why it could not.
export function addToTests(callId) {
  return (turn) => {
    if (turn.index === 0 || turn.withdrawn || !["speech", "dtmf", "no_input"].includes(turn.kind)) return "";
    const note = el("div", { class: "small muted test-note" });
    const button = el("button", { type: "button", class: "add-test" }, "Add to tests");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const out = await api(`/calls/${encodeURIComponent(callId)}/tests`, {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ turn: turn.index }) });
        note.replaceChildren(out.added ? `Added to ${out.file} as “${out.name}”.` : `Not added: ${out.reason}`,
          el("pre", { class: "mono small" }, out.case));
      } catch (err) {
        note.textContent = `Not added: ${err.message}`;
        button.disabled = false;
      }
    });
    return el("div", { class: "turn-actions" }, button, note);
  };
}
