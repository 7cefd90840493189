// posnet view: replays a trace (the JSON lines `posnet sim --trace` writes) in the browser.
//
// The server sends the events once (/api/trace) and, for a live testnet, the
// new ones every second (/api/trace?since=N). Everything the page shows at a
// position is a function of the events up to it: the cursor is the index of
// the last event applied (-1: none yet), and the state is rebuilt from the
// nearest checkpoint when the cursor moves back. No framework, no network
// beyond this server: the page works offline.
"use strict";

const KIND_COLORS = { proposal: "#d89614", prevote: "#2f6fde", precommit: "#1f9d55" };
// new_height has a colour of its own: grey read as "down", and a healthy node between heights is not down
const STEP_COLORS = {
  propose: "#d89614", prevote: "#2f6fde", precommit: "#1f9d55", new_height: "#4f9fb3", commit: "#1f9d55",
};
// fault windows, as the report colours them (network/testnet/report.py WINDOW_COLORS)
const FAULT_COLORS = {
  down: "#d62728", paused: "#9467bd", partition: "#ff7f0e", delay: "#1f77b4", drop: "#17becf", behave: "#7f7f7f",
};
const PENALTY_COLORS = { jailed: "#b3261e", slashed: "#b3261e", tombstoned: "#5c0f0a", unjailed: "#1f9d55", evidence: "#e0701a" };
const OTHER_COLOR = "#8a8f98";
const GROUP_COLORS = ["#7b3fbf", "#e0701a", "#139a8c", "#c43c6f", "#5b8c2a"];
const PENALTIES = new Set(["slashed", "jailed", "tombstoned", "unjailed", "evidence"]);
const FLIGHT_MS = 15; // virtual ms a delivery is drawn in flight before it lands
const DROP_SHOW_MS = 30; // virtual ms a drop stays drawn after it happened
const MAX_DRAWN = 300; // messages drawn at once, at most
const CHECKPOINT_EVERY = 2000;
const IDLE_SKIP_MS = 1500; // real ms: a longer wait for the next event is skipped while playing
const SPEEDS = [
  [0.01, "0.01x"], [0.03, "0.03x"], [0.1, "0.1x"], [0.3, "0.3x"], [1, "1x"], [3, "3x"], [10, "10x"], [100, "100x"],
];
const SVG = "http://www.w3.org/2000/svg";

const view = {
  name: "", live: false, summary: null, events: [], marks: [],
  names: [], cursor: -1, clock: 0, state: null, checkpoints: [],
  selected: null, playing: false, following: false, speed: 0.03, lastFrame: null,
  layout: {}, downWindows: [], penalties: [], windows: [], heightsFirst: [], stallMs: 1000, tEnd: 1,
  timelineBase: null, userMoved: false, arrived: null,
};

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ the model

function freshNode() {
  return { h: null, r: null, step: null, locked: -1, lock: null, up: true, standing: "", decided: null, votes: {} };
}

function freshState() {
  const nodes = {};
  for (const name of view.names) nodes[name] = freshNode();
  return { nodes, decided: {}, conflicts: [], maxHeight: 0, lastDecideT: null, decisions: 0 };
}

function nodeOf(state, name) {
  if (!(name in state.nodes)) state.nodes[name] = freshNode();
  return state.nodes[name];
}

const NEXT_STEP = { propose: "prevote", prevote: "precommit" };

function moveTo(n, h, r, step) {
  if (n.h !== null && h > n.h) {
    for (const key of Object.keys(n.votes)) if (Number(key.split("|")[1]) < h) delete n.votes[key];
  }
  n.h = h; n.r = r; n.step = step;
}

// Applies one event to the state; `steps` says whether step lines carry heights and rounds (a simulator
// trace) or they must be read off decisions and timeouts (a testnet, whose nodes do not log steps).
function apply(state, ev) {
  const steps = view.summary.steps;
  switch (ev.ev) {
    case "step": {
      const n = nodeOf(state, ev.node);
      moveTo(n, ev.h, ev.r, ev.step);
      n.locked = ev.locked; n.lock = ev.lock;
      break;
    }
    case "decide": {
      const n = nodeOf(state, ev.node);
      n.decided = { h: ev.h, r: ev.r, block: ev.block, t: ev.t };
      if (!steps) { moveTo(n, ev.h + 1, 0, "new_height"); n.locked = -1; n.lock = null; }
      const atHeight = (state.decided[ev.h] = state.decided[ev.h] || {});
      const block = String(ev.block);
      (atHeight[block] = atHeight[block] || []).push(ev.node);
      if (Object.keys(atHeight).length === 2) state.conflicts.push(ev.h);
      state.maxHeight = Math.max(state.maxHeight, ev.h);
      state.lastDecideT = ev.t;
      state.decisions += 1;
      break;
    }
    case "timeout": {
      if (steps) break;
      const n = nodeOf(state, ev.node);
      if (ev.step === "precommit") moveTo(n, ev.h, ev.r + 1, "propose");
      else moveTo(n, ev.h, ev.r, NEXT_STEP[ev.step] || ev.step);
      break;
    }
    case "deliver": {
      if (ev.msg !== "prevote" && ev.msg !== "precommit") break;
      const n = nodeOf(state, ev.to);
      const key = `${ev.msg}|${ev.h}|${ev.r}`;
      (n.votes[key] = n.votes[key] || []).push([ev.from, ev.block]);
      break;
    }
    case "crash":
    case "stop":
      nodeOf(state, ev.node).up = false;
      break;
    case "boot": {
      const n = nodeOf(state, ev.node);
      n.up = true;
      if (!steps && Number.isInteger(ev.height)) moveTo(n, ev.height + 1, 0, "new_height");
      break;
    }
    case "jailed":
    case "tombstoned":
      if (typeof ev.validator === "string") nodeOf(state, ev.validator).standing = ev.ev;
      break;
    case "unjailed":
      if (typeof ev.validator === "string" && nodeOf(state, ev.validator).standing === "jailed") {
        nodeOf(state, ev.validator).standing = "";
      }
      break;
    default:
      break;
  }
}

function clone(state) {
  return typeof structuredClone === "function" ? structuredClone(state) : JSON.parse(JSON.stringify(state));
}

// Moves the cursor to `target` (-1 .. events-1), replaying forward, from a checkpoint when going back.
function seek(target) {
  const last = view.events.length - 1;
  target = Math.max(-1, Math.min(last, Math.trunc(target)));
  if (target < view.cursor || view.state === null) {
    const k = Math.min(Math.floor((target + 1) / CHECKPOINT_EVERY), view.checkpoints.length - 1);
    if (k >= 0 && view.checkpoints[k]) {
      view.state = clone(view.checkpoints[k]);
      view.cursor = k * CHECKPOINT_EVERY - 1;
    } else {
      view.state = freshState();
      view.cursor = -1;
    }
  }
  while (view.cursor < target) {
    view.cursor += 1;
    apply(view.state, view.events[view.cursor]);
    const next = view.cursor + 1;
    if (next % CHECKPOINT_EVERY === 0 && !view.checkpoints[next / CHECKPOINT_EVERY]) {
      view.checkpoints[next / CHECKPOINT_EVERY] = clone(view.state);
    }
  }
}

function timeAt(index) {
  if (index < 0) return 0;
  for (let i = index; i >= 0; i--) if (typeof view.events[i].t === "number") return view.events[i].t;
  return 0;
}

// The last event at or before virtual time t (-1: none).
function indexAtTime(t) {
  let lo = 0, hi = view.events.length - 1, found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if ((view.events[mid].t ?? 0) <= t) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return found;
}

function goTo(index, { keepClock = false } = {}) {
  seek(index);
  if (!keepClock) view.clock = timeAt(view.cursor);
  view.following = view.live && view.cursor === view.events.length - 1;
  render();
}

// ------------------------------------------------------------------ what the whole trace says

function analyse() {
  const names = new Set(view.summary.validators.map((v) => v.name));
  const down = {}, crashed = new Set(), windows = [], penalties = [], seenPenalty = new Set(), firstDecide = {};
  for (const ev of view.events) {
    for (const key of ["node", "from", "to"]) if (typeof ev[key] === "string") names.add(ev[key]);
    if (ev.ev === "crash" || ev.ev === "stop") {
      if (!(ev.node in down)) down[ev.node] = ev.t;
      if (ev.ev === "crash") crashed.add(ev.node);
    } else if (ev.ev === "boot" && ev.node in down) {
      windows.push({ node: ev.node, start: down[ev.node], end: ev.t });
      delete down[ev.node];
      crashed.delete(ev.node);
    } else if (PENALTIES.has(ev.ev)) {
      const who = ev.validator ?? ev.offender ?? ev.node;
      const key = `${ev.ev}|${who}|${ev.height ?? ev.h ?? ""}`;
      if (!seenPenalty.has(key)) {
        seenPenalty.add(key);
        penalties.push({ t: ev.t, ev: ev.ev, who, height: ev.height ?? ev.h ?? null });
      }
    } else if (ev.ev === "decide" && !(ev.h in firstDecide)) {
      firstDecide[ev.h] = ev.t;
    }
  }
  view.windows = view.summary.windows || [];
  view.tEnd = Math.max(1, timeAt(view.events.length - 1), ...view.windows.map((w) => w.end ?? w.start));
  // an open outage: a crash still unrepaired; a final clean `stop` is the end of the run, not an outage
  for (const [node, start] of Object.entries(down)) if (crashed.has(node)) windows.push({ node, start, end: null });
  view.downWindows = windows;
  view.penalties = penalties;
  view.heightsFirst = Object.entries(firstDecide).map(([h, t]) => ({ h: Number(h), t }));
  const times = view.heightsFirst.map((d) => d.t).sort((a, b) => a - b);
  const gaps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
  const median = gaps.length ? gaps[Math.floor(gaps.length / 2)] : 0;
  view.stallMs = Math.max(1000, 10 * median);
  const known = view.summary.validators.map((v) => v.name);
  const extra = [...names].filter((n) => !known.includes(n)).sort();
  const all = [...known, ...extra];
  if (all.join(",") !== view.names.join(",")) {
    view.names = all;
    layoutRing();
    if (view.state) for (const n of all) nodeOf(view.state, n);
  }
  view.timelineBase = null;
}

// ------------------------------------------------------------------ drawing: the ring

function el(tag, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function layoutRing() {
  const shares = {};
  for (const v of view.summary.validators) shares[v.name] = v.share;
  const maxShare = Math.max(1e-9, ...Object.values(shares));
  const count = view.names.length;
  const radius = 205;
  const maxR = Math.max(6, Math.min(58, (Math.PI * radius / Math.max(count, 1)) * 0.85));
  const nodes = $("nodes"), links = $("links");
  nodes.replaceChildren(); links.replaceChildren();
  view.layout = {};
  view.names.forEach((name, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / count;
    const share = shares[name] ?? 0;
    const r = Math.max(5, maxR * Math.sqrt(Math.max(share, 0.02 * maxShare) / maxShare));
    const x = radius * Math.cos(angle), y = radius * Math.sin(angle);
    view.layout[name] = { x, y, r, angle };
    const g = el("g", { class: "node", "data-node": name, transform: `translate(${x.toFixed(1)},${y.toFixed(1)})` }, nodes);
    el("circle", { class: "halo", r: (r + 5).toFixed(1) }, g);
    el("circle", { class: "body", r: r.toFixed(1), fill: OTHER_COLOR }, g);
    const label = el("text", { class: "name", "text-anchor": "middle", dy: "5" }, g);
    label.textContent = r >= 14 ? name : "";
    const outward = y >= 0 ? r + 16 : -r - 22;
    const info = el("text", { class: "info", "text-anchor": "middle", y: outward.toFixed(1) }, g);
    info.textContent = "";
    const badge = el("text", { class: "badge", "text-anchor": "middle", y: (outward + (y >= 0 ? 13 : -13)).toFixed(1) }, g);
    badge.textContent = "";
    const title = el("title", {}, g);
    title.textContent = `${name}: stake ${(share * 100).toFixed(1)}%`;
    g.addEventListener("click", () => select(name));
  });
  for (let i = 0; i < count; i++) {
    for (let j = i + 1; j < count && count <= 16; j++) {
      const a = view.layout[view.names[i]], b = view.layout[view.names[j]];
      el("line", { class: "link", x1: a.x, y1: a.y, x2: b.x, y2: b.y }, links);
    }
  }
}

function windowsAt(t) {
  return view.windows.filter((w) => w.start <= t && (w.end === null || t < w.end));
}

function partitionsAt(t) {
  return windowsAt(t).filter((w) => w.kind === "partition" && w.groups);
}

// node -> the fault windows in force on it at t (killed, paused, delayed, ...), from the step log
function nodeFaultsAt(t) {
  const faults = {};
  for (const w of windowsAt(t)) if (w.node) (faults[w.node] = faults[w.node] || []).push(w);
  return faults;
}

const FAULT_WORDS = { down: "killed", paused: "paused", delay: "delayed", drop: "dropping", behave: "misbehaving" };

function groupColors(t) {
  const colors = {};
  partitionsAt(t).forEach((p) => {
    p.groups.forEach((group, gi) => { for (const n of group) colors[n] = GROUP_COLORS[gi % GROUP_COLORS.length]; });
  });
  return colors;
}

function stepLabel(n) {
  if (n.h === null) return "";
  return `h${n.h} r${n.r} ${n.step ?? ""}`;
}

// Whether a node is down at the clock: its own log said so (a stop, a simulated crash), or the step log
// says it was killed (a SIGKILLed node logs nothing), or paused (a stopped process logs nothing either).
function nodeCondition(name, n, faults) {
  const mine = faults[name] || [];
  if (!n.up || mine.some((w) => w.kind === "down")) return "down";
  if (mine.some((w) => w.kind === "paused")) return "paused";
  return "";
}

function drawRing() {
  const colors = groupColors(view.clock);
  const faults = nodeFaultsAt(view.clock);
  for (const g of $("nodes").children) {
    const name = g.dataset.node;
    const n = view.state.nodes[name] || freshNode();
    const body = g.querySelector(".body");
    const condition = nodeCondition(name, n, faults);
    const other = (faults[name] || []).filter((w) => w.kind !== "down" && w.kind !== "paused");
    body.style.fill = condition ? "" : STEP_COLORS[n.step] || OTHER_COLOR;
    const rim = colors[name] || (other.length ? FAULT_COLORS[other[0].kind] : null);
    body.style.stroke = condition ? "" : rim || "#2b3540";
    body.style.strokeWidth = condition ? "" : rim ? "6" : "1.5";
    g.classList.toggle("down", condition === "down");
    g.classList.toggle("paused", condition === "paused");
    g.classList.toggle("selected", name === view.selected);
    const words = (faults[name] || []).map((w) => FAULT_WORDS[w.kind] || w.kind);
    const info = condition === "down" ? (words.includes("killed") ? "down (killed)" : "down")
      : condition === "paused" ? "paused"
      : stepLabel(n) + (n.lock ? " L" : "") + (words.length ? ` \u00b7 ${words.join(", ")}` : "");
    g.querySelector(".info").textContent = info;
    g.querySelector(".badge").textContent = n.standing;
  }
  const flights = $("flights");
  flights.replaceChildren();
  let drawn = 0;
  for (let j = view.cursor + 1; j < view.events.length && drawn < MAX_DRAWN; j++) {
    const ev = view.events[j];
    if (ev.t > view.clock + FLIGHT_MS) break;
    if (ev.ev !== "deliver") continue;
    const a = view.layout[ev.from], b = view.layout[ev.to];
    if (!a || !b) continue;
    const p = Math.max(0, Math.min(1, 1 - (ev.t - view.clock) / FLIGHT_MS));
    const x = a.x + (b.x - a.x) * p, y = a.y + (b.y - a.y) * p;
    el("line", { class: "flight", x1: a.x, y1: a.y, x2: x, y2: y }, flights);
    el("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 5, fill: KIND_COLORS[ev.msg] || OTHER_COLOR }, flights);
    drawn += 1;
  }
  for (let j = view.cursor; j >= 0 && drawn < MAX_DRAWN; j--) {
    const ev = view.events[j];
    if (ev.t < view.clock - DROP_SHOW_MS) break;
    if (ev.ev !== "drop") continue;
    const a = view.layout[ev.from], b = view.layout[ev.to];
    if (!a || !b) continue;
    const mx = a.x + (b.x - a.x) * 0.5, my = a.y + (b.y - a.y) * 0.5;
    el("line", { class: "drop-line", x1: a.x, y1: a.y, x2: mx, y2: my }, flights);
    const x = el("text", { class: "drop-x", x: mx.toFixed(1), y: (my + 5).toFixed(1), "text-anchor": "middle" }, flights);
    x.textContent = "\u2715";
    drawn += 1;
  }
  const frontier = view.marks.filter((m) => m.i <= view.cursor).pop();
  $("ring-center").textContent = frontier ? `height ${frontier.h} \u00b7 round ${frontier.r}` : "not started";
  $("ring-center-2").textContent = `t = ${Math.round(view.clock)} ms`;
  const parts = partitionsAt(view.clock);
  $("ring-center-3").textContent = parts.length
    ? "partition " + parts.map((p) => p.groups.map((g) => g.join("+")).join(" | ")).join("; ")
    : "";
  const healed = view.windows.filter((w) => w.kind === "partition" && w.end !== null && w.end <= view.clock).pop();
  if (!parts.length && healed && view.clock - healed.end < 3000) {
    $("ring-center-3").textContent = `partition healed ${Math.round(view.clock - healed.end)} ms ago`;
  }
}

// ------------------------------------------------------------------ drawing: panel, lights, stake

// What a node holds of one vote kind at its height and round: distinct voters and their stake, since
// deliveries count relays and repeats too (11 deliveries can be 3 voters), and a quorum is a stake share.
function votesHeld(n, kind) {
  const held = n.h === null ? [] : n.votes[`${kind}|${n.h}|${n.r}`] || [];
  const shares = {};
  for (const v of view.summary.validators) shares[v.name] = v.share;
  const byVoter = {};
  for (const [from, block] of held) if (!(from in byVoter)) byVoter[from] = block ?? "nil";
  const voters = Object.keys(byVoter).sort();
  const share = voters.reduce((sum, v) => sum + (shares[v] ?? 0), 0);
  const blocks = {};
  for (const b of Object.values(byVoter)) blocks[b] = (blocks[b] || 0) + 1;
  const tally = Object.entries(blocks).map(([b, c]) => `${b} x${c}`).join(", ");
  const of = view.summary.validators.length;
  const pct = `${Math.round(share * 100)}% of stake`;
  const text = voters.length
    ? `${voters.length} of ${of} (${pct}) for h${n.h} r${n.r}: ${voters.join(" ")} (${tally}); ${held.length} deliveries`
    : `0 of ${of} for h${n.h ?? "-"} r${n.r ?? "-"}`;
  return { voters: voters.length, share, deliveries: held.length, text };
}

function drawPanel() {
  const panel = $("node-panel");
  const name = view.selected;
  panel.dataset.node = name || "";
  if (!name) return;
  const n = view.state.nodes[name] || freshNode();
  $("sel-name").textContent = name;
  $("sel-height").textContent = n.h ?? "-";
  $("sel-round").textContent = n.r ?? "-";
  $("sel-step").textContent = n.step ?? "-";
  const lock = $("sel-lock");
  lock.dataset.block = n.lock ?? "";
  lock.textContent = n.lock ? `${n.lock} (locked in round ${n.locked})` : "none";
  const condition = nodeCondition(name, n, nodeFaultsAt(view.clock));
  $("sel-status").textContent = (condition || "up") + (n.standing ? `, ${n.standing}` : "");
  $("sel-decided").textContent = n.decided ? `h${n.decided.h} r${n.decided.r} ${n.decided.block} at ${n.decided.t} ms` : "none yet";
  for (const kind of ["prevote", "precommit"]) {
    const held = votesHeld(n, kind);
    const cell = $(`sel-${kind}s`);
    cell.dataset.count = String(held.voters);
    cell.dataset.share = held.share.toFixed(4);
    cell.dataset.deliveries = String(held.deliveries);
    cell.textContent = held.text;
  }
  $("sel-note").textContent = view.summary.steps
    ? "votes: distinct voters whose prevote/precommit reached this node for its current height and round, " +
      "their share of the stake, and the deliveries (relays and repeats included)"
    : "a testnet's nodes log decisions and timeouts, not steps: height and round follow from those";
  for (const row of $("stake-table").querySelectorAll("tr")) row.classList.toggle("selected", row.dataset.node === name);
}

function drawLights() {
  const s = view.state;
  const safety = $("light-safety");
  if (s.conflicts.length) {
    const h = s.conflicts[0];
    safety.dataset.state = "bad";
    $("safety-text").textContent = `FORK at height ${h}: ${Object.keys(s.decided[h]).join(" vs ")}`;
  } else {
    safety.dataset.state = s.decisions ? "ok" : "unknown";
    $("safety-text").textContent = s.decisions ? "one block per height" : "nothing decided yet";
  }
  const live = $("light-liveness");
  const heights = Object.values(s.nodes).map((n) => (n.decided ? n.decided.h : 0));
  const lowest = heights.length ? Math.min(...heights) : 0;
  if (s.lastDecideT === null) {
    live.dataset.state = view.cursor >= 0 && view.clock > view.stallMs ? "warn" : "unknown";
    $("liveness-text").textContent = "no decision yet";
  } else {
    const age = Math.max(0, Math.round(view.clock - s.lastDecideT));
    live.dataset.state = age <= view.stallMs ? "ok" : "warn";
    $("liveness-text").textContent =
      `${s.maxHeight} heights decided (every node ${lowest}+), last ${age} ms ago` + (age > view.stallMs ? ": stalled" : "");
  }
}

function drawStake() {
  const table = $("stake-table");
  const rows = [...view.summary.validators].sort((a, b) => b.stake - a.stake || a.name.localeCompare(b.name));
  const max = Math.max(1e-9, ...rows.map((v) => v.share));
  table.replaceChildren();
  for (const v of rows) {
    const tr = document.createElement("tr");
    tr.dataset.node = v.name;
    tr.innerHTML = `<td></td><td class="num"></td><td class="num"></td><td style="width:40%"><div class="bar"></div></td>`;
    tr.children[0].textContent = v.name + (view.summary.byzantine[v.name] ? ` (${view.summary.byzantine[v.name]})` : "");
    tr.children[1].textContent = String(v.stake);
    tr.children[2].textContent = `${(v.share * 100).toFixed(1)}%`;
    tr.querySelector(".bar").style.width = `${(100 * v.share) / max}%`;
    tr.addEventListener("click", () => select(v.name));
    table.appendChild(tr);
  }
  $("nakamoto").textContent = view.summary.nakamoto ?? "-";
}

function drawRunInfo() {
  const s = view.summary, box = $("run-text");
  box.replaceChildren();
  const line = (label, value, code = false) => {
    if (value === null || value === undefined || value === "") return;
    const div = document.createElement("div");
    div.textContent = `${label}: `;
    const v = document.createElement(code ? "code" : "span");
    v.textContent = String(value);
    div.appendChild(v);
    box.appendChild(div);
  };
  line("source", s.source === "testnet" ? "testnet logs" : "simulator");
  line("seed", s.seed);
  line("faults", s.faults, true);
  const byz = Object.entries(s.byzantine).map(([n, m]) => `${n} ${m}`).join(", ");
  line("byzantine", byz);
  line("replay", s.replay, true);
}

function drawPosition() {
  const total = view.events.length;
  const pos = $("position");
  pos.dataset.index = String(view.cursor);
  pos.dataset.t = String(Math.round(view.clock));
  pos.textContent = `event ${view.cursor} of ${total - 1} \u00b7 t ${Math.round(view.clock)} ms`;
  const scrub = $("scrub");
  scrub.max = String(total - 1);
  if (document.activeElement !== scrub || view.playing) scrub.value = String(view.cursor);
  $("event-text").textContent = view.cursor >= 0 ? JSON.stringify(view.events[view.cursor], null, 1) : "(before the first event)";
  $("btn-play").textContent = view.playing ? "pause" : "play";
}

// ------------------------------------------------------------------ drawing: the timeline

const ROW = { top: 22, small: 14, penalties: 30, node: 13 };

function timelineRows() {
  const nodeRows = view.names.length <= 16 ? view.names : [];
  const nodesTop = ROW.top + 2 * ROW.small + ROW.penalties;
  return { nodeRows, nodesTop, height: nodesTop + nodeRows.length * ROW.node + 16 };
}

function faultColor(kind, alpha) {
  const hex = FAULT_COLORS[kind] || FAULT_COLORS.behave;
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return `rgba(${r}, ${g}, ${b}, ${alpha})`;
}

// What the timeline draws beyond rounds and decisions, one list for the canvas and the list beside it:
// fault windows (the step log's, or a simulator's partitions), down times from the nodes' own logs,
// partition heals, and penalties.
function incidents() {
  const items = [];
  for (const w of view.windows) {
    items.push({ kind: w.kind, t: w.start, end: w.end, node: w.node, label: w.label });
    if (w.kind === "partition" && w.end !== null) items.push({ kind: "heal", t: w.end, end: null, node: null, label: "partition healed" });
  }
  const killed = view.windows.filter((w) => w.kind === "down");
  for (const w of view.downWindows) {
    // a killed node's own restart closes the same outage the step log shows: list it once
    if (killed.some((k) => k.node === w.node && Math.abs(k.start - w.start) < 2000)) continue;
    items.push({ kind: "down", t: w.start, end: w.end, node: w.node, label: `${w.node} down` });
  }
  for (const p of view.penalties) {
    const at = p.height !== null ? ` at height ${p.height}` : "";
    items.push({ kind: p.ev, t: p.t, end: null, node: p.who, label: `${p.ev} ${p.who}${at}` });
  }
  return items.sort((a, b) => a.t - b.t);
}

function drawTimelineBase(canvas) {
  const { nodeRows, nodesTop, height } = timelineRows();
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 800;
  canvas.style.height = `${height}px`;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const base = document.createElement("canvas");
  base.width = canvas.width; base.height = canvas.height;
  const c = base.getContext("2d");
  c.scale(ratio, ratio);
  const left = 64, span = width - left - 8;
  const x = (t) => left + (span * t) / view.tEnd;
  const rowY = (i) => ROW.top + i * ROW.small;
  const nodeY = (name) => nodesTop + nodeRows.indexOf(name) * ROW.node;
  c.font = "11px system-ui, sans-serif";
  c.textBaseline = "middle";
  const items = incidents();
  // bands: a partition across the whole timeline; a node's fault across the whole, faintly, and in its row
  for (const w of view.windows) {
    const x0 = x(w.start), x1 = x(w.end ?? view.tEnd);
    c.fillStyle = faultColor(w.kind, w.node ? 0.07 : 0.2);
    c.fillRect(x0, 0, Math.max(1, x1 - x0), height);
    if (!w.node) {
      c.fillStyle = faultColor(w.kind, 1);
      c.fillText(w.label, x0 + 3, height - 7);
    }
  }
  for (const it of items.filter((i) => i.kind === "heal")) {
    c.fillStyle = faultColor("partition", 1);
    c.setLineDash([3, 2]);
    c.strokeStyle = faultColor("partition", 1);
    c.beginPath(); c.moveTo(x(it.t), 0); c.lineTo(x(it.t), height); c.stroke();
    c.setLineDash([]);
    c.fillText("healed", x(it.t) + 3, height - 21);
  }
  c.fillStyle = "#66707c";
  const step = niceStep(view.tEnd / 8);
  for (let t = 0; t <= view.tEnd; t += step) {
    c.fillRect(x(t), 14, 1, 4);
    if (x(t) + 52 < width) c.fillText(`${t} ms`, x(t) + 2, 8);
  }
  [["rounds", rowY(0)], ["decided", rowY(1)], ["penalties", rowY(2)]].forEach(([label, y]) => {
    c.fillStyle = "#66707c"; c.fillText(label, 2, y + 5);
  });
  for (const m of view.marks) {
    c.fillStyle = m.r === 0 ? "#2f6fde" : "#d23b3b";
    c.fillRect(x(timeAt(m.i)), rowY(0) + (m.r === 0 ? 2 : 0), 1.5, m.r === 0 ? 8 : 11);
  }
  c.fillStyle = "#1f9d55";
  for (const d of view.heightsFirst) c.fillRect(x(d.t), rowY(1) + 1, 1.5, 10);
  // penalties: a triangle and its words; labels alternate between two lines so neighbours overlap less
  let lastLabelEnd = [-Infinity, -Infinity];
  view.penalties.forEach((p) => {
    const color = PENALTY_COLORS[p.ev] || "#b3261e";
    const px = x(p.t), py = rowY(2) + 6;
    c.fillStyle = color;
    c.beginPath(); c.moveTo(px, py - 5); c.lineTo(px + 4, py + 4); c.lineTo(px - 4, py + 4); c.closePath(); c.fill();
    const text = `${p.ev} ${p.who}`;
    const line = lastLabelEnd[0] <= px ? 0 : lastLabelEnd[1] <= px ? 1 : px % 2 ? 1 : 0;
    const tx = Math.min(px + 6, width - c.measureText(text).width - 2);
    c.fillText(text, tx, py + line * 12);
    lastLabelEnd[line] = tx + c.measureText(text).width + 4;
  });
  nodeRows.forEach((name) => {
    const y = nodeY(name);
    c.fillStyle = "#66707c"; c.fillText(name, 2, y + 5);
    c.fillStyle = "#eef0f3"; c.fillRect(left, y + 2, span, 6);
  });
  for (const it of items) {
    if (!it.node || !nodeRows.includes(it.node) || !(it.kind in FAULT_COLORS)) continue;
    const y = nodeY(it.node), x0 = x(it.t), x1 = x(it.end ?? view.tEnd);
    c.fillStyle = it.kind === "down" ? "rgba(214, 39, 40, 0.55)" : faultColor(it.kind, 0.55);
    c.fillRect(x0, y, Math.max(2, x1 - x0), 10);
    const word = FAULT_WORDS[it.kind] || it.kind;
    if (x1 - x0 > c.measureText(word).width + 6) { c.fillStyle = "#fff"; c.fillText(word, x0 + 3, y + 5); }
  }
  view.timelineBase = { base, left, span, width, height, ratio };
  drawIncidents(items);
}

// The timeline's faults and penalties as a list too: readable words, and a click jumps there.
function drawIncidents(items) {
  const list = $("incidents");
  list.replaceChildren();
  for (const it of items) {
    const li = document.createElement("li");
    li.dataset.kind = it.kind;
    li.dataset.start = String(Math.round(it.t));
    li.dataset.end = it.end === null || it.end === undefined ? "" : String(Math.round(it.end));
    if (it.node) li.dataset.node = it.node;
    const sw = document.createElement("i");
    sw.className = "swatch";
    sw.style.background = FAULT_COLORS[it.kind] || PENALTY_COLORS[it.kind] || FAULT_COLORS.partition;
    li.appendChild(sw);
    const span = (ms) => `${(ms / 1000).toFixed(1)} s`;
    const when = it.end !== null && it.end !== undefined ? `${span(it.t)} .. ${span(it.end)}`
      : it.kind in FAULT_COLORS ? `${span(it.t)} .. (still)` : span(it.t);
    li.appendChild(document.createTextNode(`${when}  ${it.label}`));
    li.addEventListener("click", () => {
      pause();
      view.userMoved = true;
      seek(indexAtTime(it.t));
      view.clock = it.t;
      render();
      rememberPosition();
    });
    list.appendChild(li);
  }
  $("incidents-none").hidden = items.length > 0;
}

function niceStep(raw) {
  const power = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1))));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

function drawTimeline() {
  const canvas = $("timeline");
  if (!view.timelineBase || view.timelineBase.width !== (canvas.clientWidth || 800)) drawTimelineBase(canvas);
  const { base, left, span, height, ratio } = view.timelineBase;
  const c = canvas.getContext("2d");
  c.setTransform(1, 0, 0, 1, 0, 0);
  c.clearRect(0, 0, canvas.width, canvas.height);
  c.drawImage(base, 0, 0);
  c.scale(ratio, ratio);
  const cx = left + (span * view.clock) / view.tEnd;
  c.fillStyle = "#111";
  c.fillRect(cx - 1, 0, 2, height);
}

function render() {
  if (!view.state) return;
  drawRing();
  drawPanel();
  drawLights();
  drawPosition();
  drawTimeline();
}

// ------------------------------------------------------------------ controls

function select(name) {
  view.selected = name;
  rememberPosition();
  render();
}

function roundMarkAfter(index) {
  return view.marks.find((m) => m.i > index);
}

function roundMarkBefore(index) {
  let found = null;
  for (const m of view.marks) if (m.i < index) found = m;
  return found;
}

function rememberPosition() {
  if (!view.userMoved) return;
  const parts = [`event=${view.cursor}`];
  if (view.selected) parts.push(`node=${encodeURIComponent(view.selected)}`);
  history.replaceState(null, "", `${location.pathname}#${parts.join("&")}`);
}

function userGo(index) {
  pause();
  view.userMoved = true;
  goTo(index);
  rememberPosition();
}

function play() {
  if (view.playing) return;
  if (view.cursor >= view.events.length - 1 && !view.live) goTo(-1);
  view.playing = true;
  view.lastFrame = null;
  requestAnimationFrame(frame);
  render();
}

function pause() {
  if (!view.playing) return;
  view.playing = false;
  rememberPosition();
  render();
}

function frame(now) {
  if (!view.playing) return;
  const dt = view.lastFrame === null ? 0 : Math.min(now - view.lastFrame, 250);
  view.lastFrame = now;
  let clock = view.clock + dt * view.speed;
  const next = view.events[view.cursor + 1];
  if (next && (next.t - clock) / view.speed > IDLE_SKIP_MS) clock = next.t - FLIGHT_MS;
  let target = view.cursor;
  while (target + 1 < view.events.length && view.events[target + 1].t <= clock) target += 1;
  seek(target);
  if (!next && view.cursor >= view.events.length - 1) {
    clock = Math.min(clock, timeAt(view.cursor) + FLIGHT_MS);
    if (!view.live) { view.clock = timeAt(view.cursor); view.playing = false; render(); return; }
  }
  view.clock = clock;
  view.following = view.live && view.cursor === view.events.length - 1;
  render();
  requestAnimationFrame(frame);
}

function wireControls() {
  $("btn-play").addEventListener("click", () => (view.playing ? pause() : play()));
  $("btn-start").addEventListener("click", () => userGo(-1));
  $("btn-end").addEventListener("click", () => userGo(view.events.length - 1));
  $("btn-next-event").addEventListener("click", () => userGo(view.cursor + 1));
  $("btn-prev-event").addEventListener("click", () => userGo(view.cursor - 1));
  $("btn-next-round").addEventListener("click", () => {
    const m = roundMarkAfter(view.cursor);
    userGo(m ? m.i : view.events.length - 1);
  });
  $("btn-prev-round").addEventListener("click", () => {
    const m = roundMarkBefore(view.cursor);
    userGo(m ? m.i : -1);
  });
  $("scrub").addEventListener("input", (e) => userGo(Number(e.target.value)));
  const speed = $("speed");
  for (const [value, label] of SPEEDS) {
    const option = document.createElement("option");
    option.value = String(value); option.textContent = label;
    speed.appendChild(option);
  }
  speed.addEventListener("change", () => { view.speed = Number(speed.value); });
  $("timeline").addEventListener("click", (e) => {
    if (!view.timelineBase) return;
    const rect = e.target.getBoundingClientRect();
    const { left, span } = view.timelineBase;
    const t = Math.max(0, ((e.clientX - rect.left - left) / span) * view.tEnd);
    pause();
    view.userMoved = true;
    seek(indexAtTime(t));
    view.clock = t;
    render();
    rememberPosition();
  });
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
    const keys = {
      " ": () => (view.playing ? pause() : play()),
      ArrowRight: () => $(e.shiftKey ? "btn-next-round" : "btn-next-event").click(),
      ArrowLeft: () => $(e.shiftKey ? "btn-prev-round" : "btn-prev-event").click(),
      Home: () => $("btn-start").click(),
      End: () => $("btn-end").click(),
    };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });
  window.addEventListener("resize", () => { view.timelineBase = null; render(); });
  window.addEventListener("hashchange", openAtUrl); // a link pasted into this tab (replaceState fires none)
}

// `?t=MS`, `#event=N` or `#round=H.R` (hash wins over query), and `node=vN` in either.
function openAtUrl() {
  const params = new URLSearchParams(location.search);
  for (const [k, v] of new URLSearchParams(location.hash.replace(/^#/, ""))) params.set(k, v);
  const node = params.get("node");
  if (node && view.names.includes(node)) view.selected = node;
  if (params.has("event")) {
    goTo(Number(params.get("event")) || 0);
  } else if (params.has("round")) {
    const [h, r] = params.get("round").split(".").map(Number);
    const mark = view.marks.find((m) => m.h > h || (m.h === h && m.r >= (r || 0)));
    goTo(mark ? mark.i : view.events.length - 1);
  } else if (params.has("t")) {
    const t = Number(params.get("t")) || 0;
    seek(indexAtTime(t));
    view.clock = t;
    render();
  } else {
    goTo(view.live ? view.events.length - 1 : -1);
  }
}

// ------------------------------------------------------------------ loading and following

function showError(text) {
  const box = $("error");
  box.hidden = !text;
  box.textContent = text || "";
}

async function fetchTrace(since) {
  const response = await fetch(`/api/trace?since=${since}`, { cache: "no-store" });
  if (!response.ok) throw new Error(`the server answered ${response.status}`);
  return response.json();
}

async function poll() {
  try {
    const data = await fetchTrace(view.events.length);
    showError("");
    if (data.since !== view.events.length) return;
    const wasFollowing = view.following || view.cursor === view.events.length - 1;
    setLive(data.live);
    const windowsChanged = JSON.stringify(data.summary.windows) !== JSON.stringify(view.summary.windows);
    view.summary = data.summary;
    if (data.events.length) {
      view.events.push(...data.events);
      view.marks.push(...data.marks.filter((m) => m.i >= data.since));
      view.arrived = Date.now();
    }
    if (data.events.length || windowsChanged) analyse();
    if (!view.live) {
      render();
      return; // the testnet stopped: nothing more will come, and the clock stops where its logs end
    }
    if (wasFollowing && !view.playing) {
      goTo(view.events.length - 1);
      // at the live end the clock runs on in real time, so a stalled testnet shows its stall's age
      view.clock = timeAt(view.cursor) + (Date.now() - (view.arrived ?? Date.now()));
      render();
    }
  } catch (err) {
    showError(`lost the server: ${err.message}`);
  }
}

async function start() {
  wireControls();
  let data;
  try {
    data = await fetchTrace(0);
  } catch (err) {
    showError(`cannot load the trace: ${err.message}`);
    return;
  }
  view.name = data.name;
  view.live = data.live;
  view.summary = data.summary;
  view.events = data.events;
  view.marks = data.marks;
  view.speed = view.summary.source === "testnet" ? 1 : 0.03;
  $("speed").value = String(view.speed);
  $("source-name").textContent = data.name.split("/").pop();
  $("source-name").title = data.name;
  setLive(data.live);
  document.title = `posnet view: ${data.name}`;
  analyse();
  drawStake();
  drawRunInfo();
  view.state = freshState();
  openAtUrl();
  document.body.dataset.ready = "1";
  if (data.summary.source === "testnet") {
    // a testnet directory is polled even when its testnet is not running: it may be started again
    view.arrived = Date.now();
    setInterval(poll, 1000);
  }
}

// The badge says whether the testnet runs now (the server asks whether its `up` process is alive).
function setLive(live) {
  view.live = live;
  const badge = $("live-badge");
  badge.hidden = !live;
  badge.dataset.live = live ? "1" : "0";
  $("stopped-badge").hidden = live || view.summary?.source !== "testnet";
}

start();
