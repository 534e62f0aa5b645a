// The access explorer: reads the public HTTP API (/v1) and shows a record or a member.
// No build step, no external assets; every value from the API is inserted as text.
"use strict";

const ACTIONS = ["view", "edit", "manage_followers", "change_owner"];
const params = new URLSearchParams(location.search);
const view = document.getElementById("view");
const enc = encodeURIComponent;
const minPosition = params.get("min_position") || "";
// A past moment: every query of the view answers as of this position.
const atPosition = params.get("at_position") || "";

for (const [name, value] of params) {
  const field = document.querySelector(`#ask [name="${CSS.escape(name)}"]`);
  if (field) field.value = value;
}

function token() {
  return sessionStorage.getItem("followers-token") || "";
}

document.getElementById("save-token").addEventListener("click", () => {
  sessionStorage.setItem("followers-token", document.getElementById("token").value);
  location.reload();
});

/** One query; its reply envelope, or an Error saying the code and message. */
async function api(path, body) {
  const headers = {};
  if (token()) headers.Authorization = "Bearer " + token();
  const init = { headers };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const reply = await response.json().catch(() => null);
  if (!reply || !reply.ok) {
    const e = reply && reply.error;
    throw new Error(e ? `${e.code}: ${e.message}` : `HTTP ${response.status}`);
  }
  return reply;
}

/** `?min_position=N&at_position=M` (or `&...`), as the address bar gives them. */
function at(separator) {
  const parts = [];
  if (minPosition) parts.push(`min_position=${enc(minPosition)}`);
  if (atPosition) parts.push(`at_position=${enc(atPosition)}`);
  return parts.length ? separator + parts.join("&") : "";
}

/** The address of this page for `record`, optionally as of `position`. */
function recordHref(account, record, position) {
  const moment = position === undefined ? "" : `&at_position=${position}`;
  const min = minPosition ? `&min_position=${enc(minPosition)}` : "";
  return `?account=${enc(account)}&kind=${record.kind}&id=${enc(record.id)}${min}${moment}`;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) e.setAttribute(name, value);
  for (const child of children) e.append(child instanceof Node ? child : String(child));
  return e;
}

function recordLink(account, record) {
  const href = `?account=${enc(account)}&kind=${record.kind}&id=${enc(record.id)}${at("&")}`;
  return el("a", { href }, `${record.kind} ${record.id}`);
}

function userLink(account, user, name) {
  const href = `?account=${enc(account)}&user=${enc(user)}${at("&")}`;
  return el("a", { href }, name ? `${name} (${user})` : user);
}

function actor(a) {
  if (a.kind === "user") return a.user;
  if (a.kind === "workflow") return `workflow ${a.workflow}`;
  return "the system";
}

function how(f) {
  switch (f.how) {
    case "manual": return "added by hand";
    case "workflow": return `added by workflow ${f.workflow}`;
    case "owner_sync": return `added by the owner sync, from ${f.from.kind} ${f.from.id}`;
    default: return "added by the system";
  }
}

function table(caption, headings, rows) {
  const head = el("tr", {}, ...headings.map((h) => el("th", { scope: "col" }, h)));
  return el("table", {}, el("caption", {}, caption), el("thead", {}, head), el("tbody", {}, ...rows));
}

function definitions(pairs) {
  return el("dl", {}, ...pairs.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

/** A decision as words first (readable without colour), the reason, and a denial's hint. */
function decisionCell(answer) {
  const word = answer.allowed ? "allowed" : "denied";
  const cell = el("td", { class: word }, `${word}: ${answer.reason.replaceAll("_", " ")}`);
  if (answer.hint) cell.append(el("span", { class: "hint" }, answer.hint.message));
  return cell;
}

/** Every member against the four actions, 250 members (1000 checks) a batch. */
async function matrix(account, record, members) {
  const rows = [];
  for (let i = 0; i < members.length; i += 250) {
    const chunk = members.slice(i, i + 250);
    const checks = chunk.flatMap((m) => ACTIONS.map((action) => ({ user: m.user, action, record })));
    const body = { checks, hint: true };
    if (minPosition) body.min_position = Number(minPosition);
    if (atPosition) body.at_position = Number(atPosition);
    const reply = await api(`/v1/accounts/${enc(account)}/access/batch`, body);
    chunk.forEach((m, n) => {
      const cells = ACTIONS.map((_, a) => decisionCell(reply.answer[n * ACTIONS.length + a]));
      const who = el("th", { scope: "row" }, userLink(account, m.user, m.name));
      rows.push(el("tr", { "data-name": `${m.name} ${m.user}`.toLowerCase() }, who, ...cells));
    });
  }
  const headings = ["Member", ...ACTIONS.map((a) => a.replaceAll("_", " "))];
  const grid = table("Who may do what, and why", headings, rows);
  const filter = el("input", { type: "search", id: "member-filter" });
  filter.addEventListener("input", () => {
    const wanted = filter.value.trim().toLowerCase();
    for (const row of rows) row.hidden = wanted !== "" && !row.dataset.name.includes(wanted);
  });
  return [el("label", {}, "Filter members by name", filter), grid];
}

/** A sentence for one event of a record's history. */
function describe(e) {
  const ev = e.event;
  const users = (list) => list.map((f) => f.user || f).join(", ");
  switch (e.type) {
    case "contact_created":
    case "opportunity_created":
      return `created, owner ${ev.owner || "nobody"}`;
    case "owner_changed":
      return `owner ${ev.from || "nobody"} → ${ev.to || "nobody"}`;
    case "followers_added":
      return `followers added: ${ev.followers.map((f) => `${f.user} (${how(f)})`).join(", ")}`;
    case "followers_removed":
      return `followers removed: ${users(ev.users)}`;
    case "follower_until_changed":
      return `${ev.user} follows ${ev.until ? `until ${ev.until}` : "with no end"}`;
    case "follower_expired":
      return `${ev.user} stopped following: the until ${ev.until} came`;
    case "follower_sync_skipped":
      return `the owner sync left ${ev.user} alone (${ev.reason.replaceAll("_", " ")})`;
    default:
      return e.type.replaceAll("_", " ");
  }
}

/** The record's events, each a link to the record as it was right after it. */
async function history(account, record) {
  const path = `/v1/accounts/${enc(account)}/records/${record.kind}/${enc(record.id)}/history`;
  const min = minPosition ? `&min_position=${enc(minPosition)}` : "";
  const reply = await api(`${path}?limit=1000${min}`);
  const rows = reply.answer.events.map((e) => {
    const what = el("td", {}, describe(e));
    if (e.cause) {
      const from = e.cause.record
        ? ` (${e.cause.type.replaceAll("_", " ")} of ${e.cause.record.kind} ${e.cause.record.id} at position ${e.cause.position})`
        : "";
      what.append(el("span", { class: "hint" }, `caused by event ${e.cause.event_id}${from}`));
    }
    const moment = el("a", { href: recordHref(account, record, e.position) }, `as of ${e.position}`);
    return el("tr", {},
      el("th", { scope: "row" }, String(e.position)),
      el("td", {}, e.at),
      el("td", {}, actor(e.actor)),
      what,
      el("td", {}, moment));
  });
  const more = reply.answer.next === null ? [] : [el("p", {}, "The first 1000 commits are shown.")];
  return [table("History", ["Position", "At", "By", "What happened", "See it then"], rows), ...more];
}

async function showRecord(account, kind, id) {
  const base = `/v1/accounts/${enc(account)}`;
  const record = { kind, id };
  const [members, followers] = await Promise.all([
    api(base + at("?")),
    api(`${base}/records/${kind}/${enc(id)}/followers${at("?")}`),
  ]);
  const a = followers.answer;
  const owner = a.owner
    ? userLink(account, a.owner.user, a.owner.name)
    : "nobody (unassigned)";
  const facts = [["Owner", owner]];
  if (a.contact) facts.push(["Contact", recordLink(account, { kind: "contact", id: a.contact })]);
  if (kind === "contact") {
    const linked = await api(`${base}/contacts/${enc(id)}/opportunities${at("?")}`);
    const list = linked.answer.opportunities.map((o) =>
      el("li", {}, recordLink(account, { kind: "opportunity", id: o.opportunity })));
    facts.push(["Opportunities", list.length ? el("ul", {}, ...list) : "none"]);
  }
  const rows = a.followers.map((f) => el("tr", {},
    el("th", { scope: "row" }, userLink(account, f.user, f.name)),
    el("td", {}, how(f)),
    el("td", {}, f.added_at),
    el("td", {}, actor(f.added_by)),
    el("td", {}, f.until ? `until ${f.until}` : "no end"),
    el("td", {}, f.active ? "active" : "deactivated")));
  const followerTable = rows.length
    ? table("Followers", ["Follower", "How", "Added at", "Added by", "Follows", "Membership"], rows)
    : el("p", {}, "No followers.");
  const grid = await matrix(account, record, members.answer.members);
  const story = await history(account, record);
  const moment = atPosition
    ? [`As it was at position ${followers.position}, a past moment. `,
       el("a", { href: recordHref(account, record) }, "See it now.")]
    : [`As of position ${followers.position}.`];
  view.replaceChildren(
    el("h2", {}, `${kind} ${id} in ${account}`),
    el("p", {}, ...moment),
    definitions(facts),
    followerTable,
    ...grid,
    ...story);
}

async function showMember(account, user) {
  const base = `/v1/accounts/${enc(account)}`;
  const [members, held, reach] = await Promise.all([
    api(base + at("?")),
    api(`${base}/users/${enc(user)}/records?limit=1000${at("&")}`),
    api(`${base}/users/${enc(user)}/access?action=view&limit=1000${at("&")}`),
  ]);
  const m = members.answer.members.find((x) => x.user === user);
  const facts = m
    ? [["Name", m.name], ["Role", m.role], ["Data scope", m.data_scope], ["Membership", m.active ? "active" : "deactivated"]]
    : [["Membership", "none in this account"]];
  const heldRows = held.answer.records.map((r) => el("tr", {},
    el("th", { scope: "row" }, recordLink(account, r.record)), el("td", {}, r.relation)));
  const r = reach.answer;
  const reachRows = r.records.map((x) => el("tr", {},
    el("th", { scope: "row" }, recordLink(account, x.record)), el("td", {}, x.reason.replaceAll("_", " "))));
  const every = r.every_record
    ? el("p", {}, `Can view every record of the account (${r.every_record.replaceAll("_", " ")}).`)
    : table("Can view, and why", ["Record", "Reason"], reachRows);
  view.replaceChildren(
    el("h2", {}, `Member ${user} in ${account}`),
    el("p", {}, `As of position ${held.position}.`),
    definitions(facts),
    table("Owns or follows", ["Record", "Relation"], heldRows),
    every);
}

async function main() {
  const account = params.get("account");
  const id = params.get("id");
  const user = params.get("user");
  try {
    if (account && id) await showRecord(account, params.get("kind") || "contact", id);
    else if (account && user) await showMember(account, user);
    else return;
    document.body.dataset.state = "ready";
  } catch (e) {
    view.replaceChildren(el("p", { class: "error", role: "alert" }, `Could not load: ${e.message}`));
    document.body.dataset.state = "error";
  }
}

main();
