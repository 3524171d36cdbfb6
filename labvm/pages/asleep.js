"use strict";
// The asleep page (labvm/asleep.py). Shows the start's steps with textContent only (never as
// HTML); moves into the lab once the keeper says it is ready, on this same origin.
// The proof is what this browser was given when it opened the lab with its token (proof.js): it
// lives in this origin's storage, which no other web site and no other local port can read, and
// nothing here works for a browser without it (another user of this laptop).
const main = document.querySelector("main");
const button = document.getElementById("start");
const status = document.getElementById("status");
const error = document.getElementById("error");
const log = document.getElementById("log");
const stranger = document.getElementById("stranger");
const labPrefixes = JSON.parse(main.dataset.labPrefixes);
const proof = localStorage.getItem("labvm-proof") || "";
const ARMED_AFTER = 500;  // ms the page must be seen and focused before a click counts (double-clickjacking)
let following = false;  // a start is under way: poll often, go into the lab when it is ready
let armedAt = null;
let timer = null;

function arm() {
  // A click counts only once the page has been in front of the user for a moment: a page that
  // opens this one under the pointer (a double click's second half) gets no Start.
  const seen = document.visibilityState === "visible" && document.hasFocus();
  armedAt = seen ? performance.now() : null;
  enable();
}

function armed() {
  return armedAt !== null && performance.now() - armedAt >= ARMED_AFTER;
}

function enable() {
  if (!button) return;
  button.disabled = !armed();
  if (button.disabled && armedAt !== null) setTimeout(enable, ARMED_AFTER - (performance.now() - armedAt));
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(poll, following ? 300 : 5000);
}

function intoLab(url) {
  // The URL comes from the machine behind: only a path on this port, kept on this origin.
  const prefix = url && labPrefixes.find((p) => url.startsWith(p));
  location.replace(prefix ? location.origin + "/" + url.slice(prefix.length) : location.href);
}

function show(answer) {
  if (!answer.asleep && answer.state !== "starting") {
    intoLab(answer.url);  // the lab is back (this page's start, or `inv up` elsewhere)
    return;
  }
  if (answer.state === "ready") {
    status.textContent = "Ready: opening the lab…";
    intoLab(answer.url);
    return;
  }
  if (!answer.proven) {
    if (stranger) stranger.hidden = false;
    return;
  }
  log.replaceChildren(...answer.lines.map((line) => {
    const item = document.createElement("li");
    item.textContent = line;
    return item;
  }));
  if (!button) return;
  if (answer.state === "starting") {
    following = true;
    button.hidden = true;
    error.textContent = "";
    status.textContent = "Starting…";
  } else if (answer.state === "failed") {
    following = false;
    status.textContent = "The start failed:";
    error.textContent = answer.error;
    button.textContent = "Retry";
    button.hidden = false;
    enable();
  } else {
    button.hidden = false;
    enable();
  }
}

async function poll() {
  try {
    const response = await fetch("/.labvm/progress", {cache: "no-store", headers: {"X-Labvm-Proof": proof}});
    show(await response.json());
  } catch (e) {}
  schedule();
}

async function start(event) {
  if (!event.isTrusted || !armed()) return;
  button.disabled = true;
  error.textContent = "";
  status.textContent = "Asking to start…";
  try {
    const response = await fetch("/.labvm/start", {
      method: "POST", cache: "no-store", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({proof: proof}),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.message);
    following = true;
    button.hidden = true;
    status.textContent = "Starting…";
  } catch (e) {
    status.textContent = "";
    error.textContent = e.message;
    enable();
  }
  poll();
}

if (button) button.addEventListener("click", start);
arm();
poll();
