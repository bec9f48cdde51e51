// The admin page's script: the admin token lives in this tab's session storage and goes out only as
// `Authorization: Bearer …` on this service's own API.
"use strict";

const KEY = "gfj-admin-token";
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
  const subs = document.querySelector("#subscriptions tbody");
  subs.replaceChildren();
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
    actions.append(resync, unlink);
    tr.append(actions);
    subs.append(tr);
  }
  const jsm = await api("GET", "/admin/api/jsm");
  if (jsm.ok) renderJsm(jsm.data);
  const attention = await api("GET", "/admin/api/attention");
  if (attention.ok) renderAttention(attention.data);
  return true;
}

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
