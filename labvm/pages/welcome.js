"use strict";
// What labvm's opener (a 0600 page on the laptop) sends the browser to (labvm/asleep.py): the proof
// rides in the fragment, which no server ever receives; kept in this origin's storage, then on to
// the lab on this same origin.
const given = new URLSearchParams(location.hash.slice(1));
const proof = given.get("proof") || "";
const next = given.get("next") || "/";
if (/^[A-Za-z0-9_-]{43}$/.test(proof)) localStorage.setItem("labvm-proof", proof);
history.replaceState(null, "", location.pathname);  // the proof leaves the address bar
location.replace(next.startsWith("/") && !next.startsWith("//") ? next : "/");
