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
