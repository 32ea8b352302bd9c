/* triage console: live refresh, deadline countdowns, "also viewing" and the copy button. Part of social-triage
   (MIT). The pages are complete without it; this only keeps an open tab current. */
(function () {
  "use strict";
  var live = document.getElementById("live");
  var every = parseFloat(document.body.getAttribute("data-poll") || "5") * 1000;
  function fmt(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 90) return s + "s";
    if (s < 5400) return Math.floor(s / 60) + "m";
    if (s < 172800) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d";
  }
  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll(".countdown[data-deadline]").forEach(function (el) {
      var left = parseFloat(el.getAttribute("data-deadline")) - now;
      el.textContent = left >= 0 ? "due in " + fmt(left) : "overdue by " + fmt(-left);
      el.classList.toggle("breached", left < 0);
    });
  }
  function busy() {
    // Never replace the page under an agent who is editing a reply or choosing a correction.
    var a = document.activeElement;
    return (a && a !== document.body && live.contains(a) && /^(TEXTAREA|INPUT|SELECT)$/.test(a.tagName)) ||
      live.querySelector("textarea[data-edited], details[open]") !== null;
  }
  var csrf = document.body.getAttribute("data-csrf");
  function presence() {
    // The page is not reloaded while the agent works in it: say we are still here, and show who else is.
    if (!csrf) return;
    var spans = live.querySelectorAll(".presence[data-presence]");
    var targets = [];
    spans.forEach(function (el) { targets.push(el.getAttribute("data-presence")); });
    if (!targets.length) return;
    fetch("/api/presence", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ targets: targets }) })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        live.querySelectorAll(".presence[data-presence]").forEach(function (el) {
          var who = data.viewers[el.getAttribute("data-presence")];
          if (!who) return;
          el.textContent = who.length ? "also viewing: " + who.map(function (v) {
            return v.name + " (" + v.seconds_ago + " s ago)";
          }).join(", ") : "";
        });
      })
      .catch(function () { /* the next poll tries again */ });
  }
  function refresh() {
    if (document.hidden) return;
    if (busy()) { presence(); return; }  // a reload would also have said we are here
    fetch(window.location.href, { headers: { "X-Console-Poll": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null || busy()) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (fresh) { live.innerHTML = fresh.innerHTML; tick(); }
      })
      .catch(function () { /* the next poll tries again */ });
  }
  live.addEventListener("input", function (e) {
    if (e.target.tagName === "TEXTAREA") e.target.setAttribute("data-edited", "1");
  });
  live.addEventListener("click", function (e) {
    if (!e.target.classList.contains("copy")) return;
    var box = e.target.parentNode.querySelector("textarea.reply");
    if (!box) return;
    box.select();
    if (navigator.clipboard) navigator.clipboard.writeText(box.value).catch(function () {});
    else document.execCommand("copy");
    e.target.textContent = "copied";
  });
  setInterval(tick, 1000);
  setInterval(refresh, every);
  // A hidden tab sends no heartbeat (its viewer drops off the others' pages); back in view, say so at once.
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
})();
