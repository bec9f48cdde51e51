// The admin page's script: the admin token lives in this tab's session storage and goes out only as
// `Authorization: Bearer …` on this service's own API.
"use strict";

const KEY = "gfj-admin-token";
// Linked groups whose per-project backfill is shown; kept across refreshes.
const OPEN_GROUPS = new Set();
// Operators see how many of a group's backfill tasks are done.
const WITH_TASKS = true;

async function api(method, path, body) {
  return request(method, path, body, "Bearer " + (sessionStorage.getItem(KEY) || ""));
}

async function refresh() {
  const r = await api("GET", "/admin/api/overview");
  if (r.status === 401) {
    document.getElementById("admin").hidden = true;
    document.getElementById("token-section").hidden = false;
    return false;
  }
  if (!r.ok) {
    say((r.data && r.data.error) || "Could not read the overview.", true);
    return false;
  }
  document.getElementById("token-section").hidden = true;
  document.getElementById("admin").hidden = false;
  const sites = document.querySelector("#sites tbody");
  sites.replaceChildren();
  const select = document.getElementById("link-site");
  const chosen = select.value;
  select.replaceChildren();
  for (const s of r.data.sites) {
    const tr = element("tr", { "data-site": s.base_url });
    tr.append(element("td", {}, s.base_url), element("td", {}, s.mode), element("td", {}, s.client_key));
    sites.append(tr);
    select.append(element("option", { value: s.client_key }, s.base_url + " (" + s.mode + ")"));
  }
  if (chosen) select.value = chosen;
  const gitlab = document.getElementById("link-gitlab");
  if (!gitlab.value && r.data.gitlab_instances.length > 0) gitlab.value = r.data.gitlab_instances[0];
  // Built apart and swapped in at once, so that refreshes that overlap never show a row twice.
  const rows = [];
  for (const sub of r.data.subscriptions) {
    const tr = element("tr", { "data-subscription": sub.group_path });
    tr.append(element("td", {}, sub.site), element("td", {}, sub.group_path), element("td", {}, sub.gitlab_url));
    tr.append(progressCell(sub.backfill, WITH_TASKS));
    const actions = element("td");
    const resync = element("button", { type: "button", class: "secondary", "data-resync": sub.group_path }, "Resync failed");
    resync.addEventListener("click", async () => {
      const x = await api("POST", "/admin/api/subscriptions/" + sub.id + "/resync", { failed: true });
      say(x.ok ? "Queued " + x.data.queued_tasks + " task(s) again." : (x.data && x.data.error) || "Could not resync.", !x.ok);
      refresh();
    });
    const unlink = element("button", { type: "button", class: "secondary", "data-unlink": sub.group_path }, "Unlink");
    unlink.addEventListener("click", async () => {
      unlink.disabled = true;
      const x = await api("DELETE", "/admin/api/subscriptions/" + sub.id);
      say(x.status === 204 ? "Unlinked " + sub.group_path + "." : (x.data && x.data.error) || "Could not unlink.", x.status !== 204);
      refresh();
    });
    const open = OPEN_GROUPS.has(sub.id);
    const details = element("button", {
      type: "button", class: "secondary", "data-projects": sub.group_path,
      "aria-expanded": String(open), "aria-controls": "projects-" + sub.id,
    }, open ? "Hide projects" : "Projects");
    details.addEventListener("click", () => {
      if (OPEN_GROUPS.has(sub.id)) OPEN_GROUPS.delete(sub.id); else OPEN_GROUPS.add(sub.id);
      refresh();
    });
    actions.append(details, resync, unlink);
    tr.append(actions);
    rows.push(tr);
    if (open) {
      const row = element("tr", { id: "projects-" + sub.id, class: "drill-down" });
      const cell = element("td", { colspan: "5" });
      row.append(cell);
      rows.push(row);
      const b = await api("GET", "/admin/api/subscriptions/" + sub.id + "/backfill");
      if (b.ok) cell.append(backfillTable(b.data, sub.group_path));
      else cell.append(document.createTextNode((b.data && b.data.error) || "Could not read the backfill."));
    }
  }
  document.querySelector("#subscriptions tbody").replaceChildren(...rows);
  const jsm = await api("GET", "/admin/api/jsm");
  if (jsm.ok) renderJsm(jsm.data);
  const attention = await api("GET", "/admin/api/attention");
  if (attention.ok) renderAttention(attention.data);
  return true;
}

// One group's backfill: a row per project, and per project each kind of history with its state,
// counts and, when it failed, why.
function backfillTable(report, group) {
  const table = element("table", { "data-backfill": group });
  table.append(element("caption", {}, "Backfill of " + group + ": " + report.state +
    (report.unsent_entities > 0 ? " · " + report.unsent_entities + " entities still to send" : "")));
  const head = element("tr");
  for (const h of ["Project", "State", "History"]) head.append(element("th", { scope: "col" }, h));
  table.append(element("thead", {}), element("tbody", {}));
  table.tHead.append(head);
  if (report.projects.length === 0) {
    const tr = element("tr");
    tr.append(element("td", { colspan: "3" }, "Not planned yet: the group's projects are being listed."));
    table.tBodies[0].append(tr);
  }
  for (const p of report.projects) {
    const tr = element("tr", { "data-project": p.project_path, "data-state": p.state });
    const tasks = element("ul", { class: "tasks" });
    for (const t of p.tasks) {
      const count = t.items_total !== null && t.state !== "done" ? t.items_done + "/" + t.items_total : String(t.items_done);
      const li = element("li", { "data-task": t.entity, "data-state": t.state },
        t.entity + ": " + t.state + ", " + count + " read, " + t.items_sent + " sent" + (t.error ? " — " + t.error : ""));
      if (t.state === "failed") li.className = "error";
      tasks.append(li);
    }
    const history = element("td");
    history.append(tasks);
    tr.append(element("th", { scope: "row" }, p.project_path), element("td", {}, p.state), history);
    table.tBodies[0].append(tr);
  }
  return table;
}

// `status --issue`: what was sent under a key with Jira's verdicts, its gates, and why not.
function renderIssue(r) {
  const out = document.getElementById("issue-result");
  out.replaceChildren();
  if (r.sent.length === 0) {
    out.append(element("p", { "data-issue-empty": r.issue_key },
      "Nothing was sent to Jira under " + r.issue_key + " in the audit window: no linked GitLab activity mentioned it."));
  } else {
    const table = element("table", { "data-issue": r.issue_key });
    table.append(element("caption", {}, "Sent to Jira under " + r.issue_key + " (newest first)"));
    const head = element("tr");
    for (const h of ["When", "Entity", "Id", "Jira's verdict"]) head.append(element("th", { scope: "col" }, h));
    table.append(element("thead", {}), element("tbody", {}));
    table.tHead.append(head);
    for (const e of r.sent) {
      const tr = element("tr", { "data-entity": e.entity_type, "data-verdict": e.verdict });
      tr.append(element("td", {}, new Date(e.at).toISOString()), element("td", {}, e.entity_type),
        element("td", {}, e.entity_id), element("td", {}, e.verdict + (e.message ? ": " + e.message : "")));
      table.tBodies[0].append(tr);
    }
    out.append(table);
  }
  if (r.gates.length > 0) {
    const gates = element("ul");
    gates.replaceChildren(...r.gates.map((g) => element("li", { "data-gate": g.id },
      "Deployment " + g.deployment_id + " to " + g.environment_name + ": " + g.state +
      (g.decision ? " (" + g.decision + ")" : ""))));
    out.append(element("h3", {}, "Deployment gates"), gates);
  }
  for (const n of r.notes) out.append(element("p", { class: "note", "data-issue-note": "" }, n));
}

document.getElementById("issue-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const key = document.getElementById("issue-key").value.trim();
  const r = await api("GET", "/admin/api/issues/" + encodeURIComponent(key));
  if (r.ok) renderIssue(r.data);
  else {
    document.getElementById("issue-result").replaceChildren();
    say((r.data && r.data.error) || "Could not search.", true);
  }
});

// Dead jobs (with a retry button), sites paused or flagged, open gates, and Jira's refusals.
function renderAttention(a) {
  const dead = document.querySelector("#dead-jobs tbody");
  dead.replaceChildren();
  for (const j of a.dead_jobs) {
    const tr = element("tr", { "data-dead-job": j.id });
    tr.append(element("td", {}, String(j.id)), element("td", {}, j.kind), element("td", {}, j.last_error || ""));
    const td = element("td");
    const retry = element("button", { type: "button", class: "secondary", "data-retry": j.id }, "Retry");
    retry.addEventListener("click", async () => {
      const x = await api("POST", "/admin/api/jobs/" + j.id + "/retry");
      say(x.ok ? "Job " + j.id + " runs again." : (x.data && x.data.error) || "Could not retry.", !x.ok);
      refresh();
    });
    td.append(retry);
    tr.append(td);
    dead.append(tr);
  }
  document.getElementById("dead-jobs").hidden = a.dead_jobs.length === 0;
  const sites = document.getElementById("attention-sites");
  sites.replaceChildren(...a.sites.map((s) => element("li", { "data-site-attention": s.client_key },
    s.client_key + ": " + (s.attention ? "needs attention: " + s.attention : "paused: " + (s.pause_reason || "")))));
  const gates = document.getElementById("open-gates");
  gates.replaceChildren(...a.open_gates.map((g) => element("li", { "data-gate": g.id },
    "Gate " + g.id + ": deployment " + g.deployment_id + " to " + g.environment_name + ", " + g.state +
    (g.change_request ? " (change request " + g.change_request + ")" : "") + ", " + Math.round(g.age_ms / 1000) + " s")));
  const rejections = document.getElementById("rejections");
  rejections.querySelector("ul").replaceChildren(...a.rejections.map((r) => element("li", {},
    r.entity_type + " " + r.entity_id + ": " + r.reason)));
  rejections.hidden = a.rejections.length === 0;
  document.getElementById("attention-none").hidden =
    a.dead_jobs.length + a.sites.length + a.open_gates.length > 0;
}

document.getElementById("token-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("token").value);
  document.getElementById("token").value = "";
  if (!(await refresh())) say("That is not the admin token.", true);
  else say("");
});

document.getElementById("gitlab-sign-in").addEventListener("click", async () => {
  const r = await api("POST", "/gitlab/oauth/start", { gitlab_url: document.getElementById("link-gitlab").value });
  if (!r.ok) return say((r.data && r.data.error) || "Could not start the GitLab sign-in.", true);
  window.open(r.data.start_url, "gitlab-sign-in", "width=640,height=720");
  say("Sign in to GitLab in the new window, confirm the connection there, then enter the connection id it shows.");
});

document.getElementById("link-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const connection = document.getElementById("link-connection").value;
  const body = {
    site: document.getElementById("link-site").value,
    group: document.getElementById("link-group").value,
    gitlab_url: document.getElementById("link-gitlab").value,
    hook_mode: document.getElementById("link-hook-mode").value,
  };
  if (connection) body.gitlab_connection = Number(connection);
  else body.gitlab_token = document.getElementById("link-token").value;
  say("Linking " + body.group + "…");
  const r = await api("POST", "/admin/api/subscriptions", body);
  document.getElementById("link-token").value = "";
  if (r.status === 201) say("Linked " + body.group + ". Its history is on its way.");
  else say((r.data && r.data.error) || "Could not link.", true);
  refresh();
});

wireJsmForm("/admin/api/subscriptions", api, refresh);

refresh();
setInterval(() => { if (sessionStorage.getItem(KEY)) refresh(); }, 3000);
