// What the configuration page and the admin page share: messages, building elements, the progress cell
// of a linked group, and calls to this service's API. Each page's own script adds its authorization.
"use strict";

function say(text, isError) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = isError ? "error" : "";
}

function element(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// `{ok, status, data}` of one API call; `data` is the JSON answer, or null.
async function request(method, path, body, authorization) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: authorization, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  return { ok: response.ok, status: response.status, data };
}

// A linked group's backfill: a bar and a line; `withTasks` adds the count of tasks done.
function progressCell(b, withTasks) {
  const td = element("td", { "data-state": b.state, class: "state-" + b.state });
  const bar = element("span", { class: "bar" });
  const fill = element("span");
  fill.style.width = Math.round(Math.min(1, b.fraction) * 100) + "%";
  bar.append(fill);
  td.append(bar);
  const p = b.progress;
  let text = b.state;
  if (withTasks) text += " · " + p.done + "/" + p.tasks + " tasks";
  if (p.items_done > 0) text += " · " + p.items_done + " read";
  if (b.state === "running" && p.eta_ms) text += " · about " + Math.ceil(p.eta_ms / 1000) + " s left";
  if (b.failures.length > 0) text += " · " + b.failures.length + " failed: " + b.failures[0].error;
  td.append(document.createTextNode(text));
  return td;
}

// The JSM section both pages share: what is in force per project of each linked group, and a form that
// sets a project's or a group's own settings. `base` is the page's subscriptions API, `call` its `api`.
// Empty fields leave a setting as it is; "none" clears service IDs or turns gating off. The gating
// token goes out once and never comes back.
function renderJsm(all) {
  const rows = document.querySelector("#jsm tbody");
  rows.replaceChildren();
  const select = document.getElementById("jsm-subscription");
  const chosen = select.value;
  select.replaceChildren();
  for (const sub of all) {
    select.append(element("option", { value: sub.subscription_id }, sub.group + " → " + sub.site));
    for (const p of sub.projects) {
      const f = p.in_force;
      const tr = element("tr", { "data-jsm-project": p.path, "data-service-ids": f.service_ids.join(",") });
      const ids = f.service_ids.length > 0 ? f.service_ids.join(", ") + " (from " + f.service_ids_from + ")" : "none";
      const gating = f.gating ? f.gating.tiers.join(", ") + " (from " + f.gating.from + ")" : "off";
      tr.append(element("td", {}, p.path), element("td", {}, ids), element("td", {}, gating));
      rows.append(tr);
    }
  }
  if (chosen) select.value = chosen;
}

function wireJsmForm(base, call, after) {
  const field = (id) => document.getElementById(id);
  const listValue = (text) => (text.trim().toLowerCase() === "none" ? "" : text.trim());
  field("jsm-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {};
    body[field("jsm-kind").value] = field("jsm-path").value.trim();
    if (field("jsm-service-ids").value.trim() !== "") body.service_ids = listValue(field("jsm-service-ids").value);
    if (field("jsm-tiers").value.trim() !== "") body.gating_tiers = listValue(field("jsm-tiers").value);
    if (field("jsm-token").value !== "") body.gating_token = field("jsm-token").value;
    if (field("jsm-play").value !== "") body.play_after_approval = field("jsm-play").value === "true";
    const r = await call("PUT", base + "/" + field("jsm-subscription").value + "/jsm", body);
    field("jsm-token").value = "";
    say(r.ok ? "Saved the JSM settings of " + field("jsm-path").value + "." : (r.data && r.data.error) || "Could not save.", !r.ok);
    after();
  });
}
