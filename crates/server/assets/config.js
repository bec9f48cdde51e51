// The configuration page's script. It calls this service's API with the context token the page was
// rendered with (sent as `Authorization: JWT …`, never as a cookie), and works without Atlassian's
// script; inside Jira with Atlassian's script loaded, it takes fresh tokens from `AP.context.getToken`.
"use strict";

// The progress cell shows no task count here: Jira users see how far the history is, not its parts.
const WITH_TASKS = false;

let token = document.querySelector('meta[name="gfj-token"]').content;

function freshToken() {
  if (window.AP && AP.context && AP.context.getToken) {
    return new Promise((resolve) => AP.context.getToken((t) => resolve(t || token)));
  }
  return Promise.resolve(token);
}

async function api(method, path, body) {
  token = await freshToken();
  return request(method, path, body, "JWT " + token);
}

function instance() {
  return document.getElementById("instance").value;
}

async function loadGroups() {
  const r = await api("GET", "/jira/gitlab/groups?gitlab_url=" + encodeURIComponent(instance()));
  if (!r.ok) return r;
  const who = document.getElementById("signed-in");
  who.hidden = false;
  who.textContent = "Signed in as @" + r.data.username + ".";
  const list = document.getElementById("groups");
  list.replaceChildren();
  if (r.data.groups.length === 0) {
    list.append(element("li", { class: "note" }, "You are not Maintainer or Owner of any group."));
  }
  for (const g of r.data.groups) {
    const li = element("li", { "data-group": g.full_path });
    li.append(element("span", {}, g.full_path));
    const b = element("button", { type: "button", "data-link": g.full_path }, "Link");
    b.addEventListener("click", () => link(g.full_path, b));
    li.append(b);
    list.append(li);
  }
  return r;
}

async function signIn() {
  const r = await api("POST", "/jira/gitlab/sign-in", { gitlab_url: instance() });
  if (!r.ok) return say((r.data && r.data.error) || "Could not start the GitLab sign-in.", true);
  // The window starts on this service's own origin, which ties the sign-in to this browser, then goes
  // to GitLab, then asks there whether to connect the GitLab account to this Jira site.
  window.open(r.data.start_url, "gitlab-sign-in", "width=640,height=720");
  say("Finish signing in to GitLab in the new window, and confirm the connection there.");
  // The sign-in ends in the other window; its groups show once it is done.
  const started = Date.now();
  const poll = async () => {
    const g = await loadGroups();
    if (g.ok) return say("Signed in to GitLab.");
    if (g.status !== 409 || Date.now() - started > 5 * 60 * 1000) {
      return say((g.data && g.data.error) || "GitLab sign-in did not finish.", true);
    }
    setTimeout(poll, 1500);
  };
  setTimeout(poll, 1500);
}

async function link(path, button) {
  button.disabled = true;
  say("Linking " + path + "…");
  const r = await api("POST", "/jira/subscriptions", { namespace_path: path, gitlab_url: instance() });
  button.disabled = false;
  if (r.status === 201) {
    say("Linked " + path + ". Its history is on its way.");
    return loadSubscriptions();
  }
  say((r.data && r.data.error) || "Failed to link group. Please try again.", true);
}

async function unlink(sub, button) {
  button.disabled = true;
  const r = await api("DELETE", "/jira/subscriptions/" + sub.id);
  if (r.status === 204) {
    say("Unlinked " + sub.group_path + ".");
    return loadSubscriptions();
  }
  button.disabled = false;
  say((r.data && r.data.error) || "Could not unlink.", true);
}

async function loadSubscriptions() {
  const r = await api("GET", "/jira/subscriptions");
  const body = document.querySelector("#subscriptions tbody");
  if (!r.ok) {
    body.replaceChildren(element("tr", {}, ""));
    return say((r.data && r.data.error) || "Could not read the linked groups.", true);
  }
  body.replaceChildren();
  if (r.data.length === 0) {
    const tr = element("tr");
    tr.append(element("td", { colspan: "4", class: "note" }, "No group is linked yet."));
    body.append(tr);
  }
  for (const sub of r.data) {
    const tr = element("tr", { "data-subscription": sub.group_path });
    tr.append(element("td", {}, sub.group_path));
    tr.append(element("td", {}, sub.gitlab_url));
    tr.append(progressCell(sub.backfill, WITH_TASKS));
    const td = element("td");
    const b = element("button", { type: "button", class: "secondary", "data-unlink": sub.group_path }, "Unlink");
    b.addEventListener("click", () => unlink(sub, b));
    td.append(b);
    tr.append(td);
    body.append(tr);
  }
}

// Jira administrators see and change the JSM settings; for others the section stays hidden.
async function loadJsm() {
  const r = await api("GET", "/jira/jsm");
  document.getElementById("jsm-section").hidden = !r.ok;
  if (r.ok) renderJsm(r.data);
}

document.getElementById("sign-in").addEventListener("click", signIn);
wireJsmForm("/jira/subscriptions", api, loadJsm);
loadJsm();
document.getElementById("instance").addEventListener("change", () => loadGroups());
loadGroups();
loadSubscriptions();
setInterval(loadSubscriptions, 3000);
