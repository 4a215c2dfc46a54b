// The Review page: the turns worth a look, grouped, and one action per group (or per chosen
// turns): give them an intent (proven before it goes live), mark them out of scope, propose a
// new intent, or dismiss them. The decisions are ivr/review/changes.py, via review_api.py.
import { api, banner, callLink, confidenceBar, el, qs, topBar } from "./common.js";

topBar("review");
const $ = (id) => document.getElementById(id);
const form = $("filters");
let flows = {}; // flow -> {node or "*": [intents]}
let recording = false; // calls are recorded: each spoken turn has its words to play

$("by").value = localStorage.getItem("ivr.review.by") || "";
$("by").addEventListener("change", () => localStorage.setItem("ivr.review.by", $("by").value.trim()));

function filters() {
  const data = new FormData(form);
  const since = data.get("since");
  return { flow: data.get("flow") || "", since: since ? Math.floor(Date.now() / 1000 - Number(since)) : "" };
}

async function post(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, by: $("by").value.trim() || undefined }) });
}

function intentsFor(group) {
  // the intents a turn of this group can be given: those of the nodes it was said at
  const names = new Set();
  for (const [where] of group.nodes) {
    const [flow, node] = where.split(/:(.*)/s);
    const menu = flows[flow] || {};
    for (const name of [...(menu[node] || []), ...(menu["*"] || [])]) names.add(name);
  }
  return [...names].sort();
}

function groupCard(group, index) {
  const checks = new Map();
  const rows = group.turns.map((t) => {
    const id = `${t.call_id}:${t.seq}`;
    const box = el("input", { type: "checkbox", checked: true, "aria-label": `include “${t.text}”` });
    checks.set(id, box);
    return el("tr", {},
      el("td", {}, box),
      el("td", {}, `“${t.text}”`, recording && t.speech ? el("audio", { class: "snippet", controls: true, preload: "none",
        src: `/dashboard/api/calls/${encodeURIComponent(t.call_id)}/recording?turn=${t.seq}`,
        title: "what the caller said (the recording may have been deleted since)" }) : null),
      el("td", { class: "small" }, t.intent || "no match", confidenceBar(t.confidence)),
      el("td", { class: "small muted" }, t.node || "–"),
      el("td", { class: "small" }, callLink(t.call_id, `${t.call_id.slice(0, 10)}…:${t.seq}`)));
  });
  const hidden = group.ids.slice(group.turns.length); // not shown, still part of the group's action
  const chosen = () => [...[...checks].filter(([, box]) => box.checked).map(([id]) => id), ...hidden];
  const select = el("select", { "aria-label": "intent", class: "intent" },
    el("option", { value: "" }, "give them the intent…"),
    intentsFor(group).map((name) => el("option", { value: name }, name)),
    el("option", { value: "out_of_scope" }, "out of scope (teach the menu not to route it)"));
  const proof = el("pre", { class: "proof", hidden: true });
  const show = (text, kind = "") => { proof.hidden = false; proof.className = `proof ${kind}`; proof.textContent = text; };
  const buttons = [];
  const busy = (on) => buttons.forEach((b) => { b.disabled = on; });

  async function decide(dryRun) {
    if (!select.value) { show("Choose an intent first."); return; }
    busy(true);
    show(dryRun ? "Proving the change on the flow's queued turns and tests…" : "Proving and applying…");
    try {
      const out = await post("/review/accept", { intent: select.value, turns: chosen(), dry_run: dryRun });
      show(out.lines.join("\n"), out.action === "refused" ? "refused" : out.written ? "applied" : "");
      if (out.written) setTimeout(load, 1500); // the turns leave the queue; the flow reloads
    } catch (err) {
      show(err.message, "refused");
    } finally {
      busy(false);
    }
  }

  async function settle(action) {
    let intent;
    if (action === "propose") {
      intent = prompt("Name of the new intent (the designer adds it to the flow):", "");
      if (!intent) return;
    }
    busy(true);
    try {
      const out = await post("/review/settle", { action, turns: chosen(), intent });
      show(`${out.turns} turn(s) ${out.action}${intent ? ` as a new intent “${intent}”` : ""}.`, "applied");
      setTimeout(load, 800);
    } catch (err) {
      show(err.message, "refused");
    } finally {
      busy(false);
    }
  }

  const preview = el("button", { type: "button", class: "preview", onclick: () => decide(true) }, "Preview");
  const apply = el("button", { type: "button", class: "apply", onclick: () => decide(false) }, "Apply");
  const propose = el("button", { type: "button", class: "propose", onclick: () => settle("propose") }, "Propose new intent…");
  const dismiss = el("button", { type: "button", class: "dismiss", onclick: () => settle("dismiss") }, "Dismiss");
  buttons.push(preview, apply, propose, dismiss);
  const reasons = group.reasons.map(([r, n]) => el("span", { class: "pill warn", title: r }, `${r.replaceAll("_", " ")} ${n}`));
  return el("section", { class: "group", "data-index": index },
    el("h3", {}, `${group.size} turn${group.size > 1 ? "s" : ""} like “${group.text}”`),
    el("div", { class: "meta" }, reasons, " · the line chose ", group.did.map(([i, n]) => `${i} ${n}`).join(", "),
      " · at ", group.nodes.map(([w, n]) => `${w} ${n}`).join(", "),
      group.versions.length ? ` · flow version${group.versions.length > 1 ? "s" : ""} ${group.versions.map((v) => v.slice(0, 8)).join(", ")}` : ""),
    el("table", {}, el("tbody", {}, rows)),
    hidden.length ? el("p", { class: "small muted" }, `…and ${hidden.length} more like them, included in the action.`) : null,
    el("div", { class: "decide" }, select, preview, apply, propose, dismiss),
    proof);
}

function proposalCard(p) {
  const has = Object.values(flows[p.flow] || {}).some((names) => names.includes(p.intent));
  const out = el("pre", { class: "proof", hidden: true });
  const restore = el("button", { type: "button", onclick: async () => {
    try { await post("/review/settle", { action: "restore", turns: p.turns.map((t) => t.id) }); load(); }
    catch (err) { banner(err.message); }
  } }, "Back to the queue");
  const acceptInto = has ? el("button", { type: "button", class: "apply", onclick: async () => {
    out.hidden = false; out.textContent = "Proving and applying…";
    try {
      const r = await post("/review/accept", { intent: p.intent, turns: p.turns.map((t) => t.id) });
      out.className = `proof ${r.action === "refused" ? "refused" : "applied"}`; out.textContent = r.lines.join("\n");
      if (r.written) setTimeout(load, 1500);
    } catch (err) { out.className = "proof refused"; out.textContent = err.message; }
  } }, `Accept into ${p.intent}`) : null;
  return el("section", { class: "group proposal" },
    el("h3", {}, `${p.intent} `, el("span", { class: "small muted" }, `in ${p.flow}, ${p.turns.length} turn(s)`)),
    el("p", { class: "small" }, p.turns.slice(0, 5).map((t) => `“${t.text}”`).join(" · ")),
    el("p", { class: "small muted" }, has ? "The flow has this intent now." : "Not in the flow yet: the designer adds it."),
    el("div", { class: "decide" }, acceptInto, restore), out);
}

function dismissedRow(d) {
  const back = el("button", { type: "button", class: "restore", onclick: async () => {
    back.disabled = true;
    try { await post("/review/settle", { action: "restore", turns: [d.id] }); load(); }
    catch (err) { back.disabled = false; banner(err.message); }
  } }, "Back to the queue");
  return el("div", { class: "decide dismissed" }, el("span", {}, `“${d.text}” `,
    el("span", { class: "small muted" }, `${d.flow} · dismissed by ${d.by || "?"}`)), back);
}

function changeRow(c) {
  const out = el("pre", { class: "proof", hidden: true });
  const undo = c.change ? el("button", { type: "button", class: "undo", onclick: async () => {
    out.hidden = false; out.className = "proof"; out.textContent = "Proving the undo on the flow's tests…";
    try {
      const r = await post("/review/undo", { change: c.change });
      out.className = `proof ${r.action === "refused" ? "refused" : "applied"}`; out.textContent = r.lines.join("\n");
      if (r.written) setTimeout(load, 1500);
    } catch (err) { out.className = "proof refused"; out.textContent = err.message; }
  } }, "Undo") : el("span", { class: "small muted" }, "delete its entries by hand");
  return el("section", { class: "group change" },
    el("div", { class: "meta" }, el("b", {}, c.change || "(before change ids)"), ` ${c.at || ""} by ${c.by || "?"} · ${c.file}: `,
      `${c.examples.length} example(s) of ${c.intents.join(", ")}`),
    el("p", { class: "small" }, c.examples.slice(0, 5).map((t) => `“${t}”`).join(" · ")),
    el("div", { class: "decide" }, undo), out);
}

async function load() {
  banner("");
  const f = filters();
  const started = performance.now();
  try {
    const [queue, history] = await Promise.all([api(`/review${qs({ ...f, groups: 50 })}`), api(`/review/history${qs({ flow: f.flow })}`)]);
    flows = queue.flows;
    recording = queue.recording;
    const select = form.elements.flow;
    if (select.options.length === 1) for (const name of Object.keys(flows)) select.append(el("option", { value: name }, name));
    const shown = queue.groups.length;
    $("summary").textContent = `${queue.total} turn${queue.total === 1 ? "" : "s"} to review in ${queue.group_count} group` +
      `${queue.group_count === 1 ? "" : "s"}${shown < queue.group_count ? ` (the ${shown} biggest below)` : ""} · ` +
      `loaded in ${Math.round(performance.now() - started)} ms`;
    document.body.dataset.loadedMs = String(Math.round(performance.now() - started));
    $("groups").replaceChildren(...(shown ? queue.groups.map(groupCard)
      : [el("div", { class: "panel empty" }, "Nothing to review: every turn was understood, or has been reviewed.")]));
    $("proposals").replaceChildren(...(queue.proposals.length ? queue.proposals.map(proposalCard)
      : [el("div", { class: "panel empty small" }, "None.")]));
    $("dismissed").replaceChildren(...(queue.dismissed.length ? [el("section", { class: "group" }, queue.dismissed.map(dismissedRow))]
      : [el("div", { class: "panel empty small" }, "None.")]));
    $("changes").replaceChildren(...(history.changes.length ? history.changes.map(changeRow)
      : [el("div", { class: "panel empty small" }, "None yet.")]));
  } catch (err) {
    banner(err.message);
  }
}

form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
load();
