// distillguard console: queue refresh and the cluster graph. No inline scripts (the CSP allows
// scripts from this service only); htmx and cytoscape.js are vendored beside this file.
"use strict";

// The queue re-reads itself every few seconds so new findings appear, unless the analyst is in
// the middle of something: rows selected, or typing in the bulk form.
function refreshQueue() {
  htmx.ajax("GET", window.location.href, { target: "#results", select: "#results", swap: "outerHTML" });
}

function startQueueRefresh() {
  const results = document.getElementById("results");
  if (!results || !results.dataset.refresh || !window.htmx) return;
  const seconds = Number(results.dataset.refresh) || 15;
  window.dgRefreshQueue = refreshQueue;
  setInterval(() => {
    const current = document.getElementById("results");
    if (!current || document.visibilityState !== "visible") return;
    if (current.querySelector("input[name=select]:checked")) return;
    if (current.contains(document.activeElement) && document.activeElement !== document.body) return;
    refreshQueue();
  }, seconds * 1000);
}

// "Select all" ticks every row of the page (a real checkbox, so it works from the keyboard).
document.addEventListener("change", (event) => {
  if (event.target.id !== "select-all") return;
  for (const box of document.querySelectorAll("#results input[name=select]")) {
    box.checked = event.target.checked;
  }
});

function linkTip(link) {
  const examples = (link.examples || []).join("; ");
  return `${link.kind}: shared by ${link.members_sharing} members, weight ${link.weight}` +
    (examples ? ` (${examples})` : "");
}

function memberTip(m) {
  const score = m.score == null ? "no finding" : `score ${m.score.toFixed(2)}`;
  return `${m.account_id}: ${score}${m.severity ? ", " + m.severity : ""}` +
    `${m.flagged ? ", flagged" : ""}${m.events == null ? "" : ", " + m.events + " events"}`;
}

function graphElements(data) {
  const elements = [{ data: { id: "cluster", label: data.cluster, kind: "cluster", tip: `cluster ${data.cluster}` } }];
  const members = new Set();
  for (const m of data.members) {
    const id = "a:" + m.account_id;
    members.add(m.account_id);
    elements.push({ data: { id, label: m.account_id, kind: "account", flagged: m.flagged ? 1 : 0,
      size: 18 + 30 * (m.score || 0), tip: memberTip(m), href: "/ui/accounts/" + encodeURIComponent(m.account_id) } });
    elements.push({ data: { id: "in:" + m.account_id, source: id, target: "cluster", kind: "member" } });
  }
  data.links.forEach((link, i) => {
    const id = "link:" + i;
    elements.push({ data: { id, label: link.kind, kind: "link", tip: linkTip(link) } });
    // Evidence that names the accounts sharing the value joins them; otherwise the cluster.
    const named = (link.members || []).filter((m) => members.has(m));
    const targets = named.length ? named.map((m) => "a:" + m) : ["cluster"];
    for (const target of targets) {
      elements.push({ data: { id: id + ">" + target, source: id, target, kind: "shares", tip: linkTip(link) } });
    }
  });
  return elements;
}

function drawGraph(container) {
  const data = JSON.parse(container.dataset.graph);
  const tip = document.getElementById("graph-tip");
  const cy = cytoscape({
    container,
    elements: graphElements(data),
    layout: { name: data.members.length > 300 ? "concentric" : "cose", animate: false, padding: 20 },
    wheelSensitivity: 0.3,
    style: [
      { selector: "node", style: { label: "data(label)", "font-size": 10, color: "#1a1a1a",
        "text-valign": "bottom", "text-margin-y": 4 } },
      { selector: "node[kind = 'account']", style: { width: "data(size)", height: "data(size)",
        "background-color": "#5a6b7d" } },
      { selector: "node[kind = 'account'][flagged = 1]", style: { "background-color": "#b3261e" } },
      { selector: "node[kind = 'cluster']", style: { shape: "diamond", width: 34, height: 34,
        "background-color": "#1f3a5f" } },
      { selector: "node[kind = 'link']", style: { shape: "round-rectangle", width: 22, height: 22,
        "background-color": "#e2a400" } },
      { selector: "edge", style: { width: 1, "line-color": "#b7c0ca", "curve-style": "straight" } },
      { selector: "edge[kind = 'shares']", style: { width: 2, "line-color": "#e2a400" } },
      { selector: ":selected", style: { "border-width": 3, "border-color": "#000" } },
    ],
  });
  const show = (event) => { if (tip) tip.textContent = event.target.data("tip") || ""; };
  cy.on("mouseover tap", "node, edge", show);
  cy.on("dbltap", "node[kind = 'account']", (event) => { window.location.href = event.target.data("href"); });
  container.dataset.renderedMembers = String(cy.nodes("[kind = 'account']").length);
  container.dataset.renderedLinks = String(cy.nodes("[kind = 'link']").length);
  window.dgGraph = cy;
}

function startGraph() {
  const container = document.getElementById("graph");
  if (!container) return;
  const script = document.createElement("script");
  script.src = "/ui/assets/cytoscape.min.js";
  script.onload = () => drawGraph(container);
  document.head.appendChild(script);
}

document.addEventListener("DOMContentLoaded", () => {
  startQueueRefresh();
  startGraph();
});
