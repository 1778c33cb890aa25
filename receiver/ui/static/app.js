// openrouter-video dashboard: live updates over Server-Sent Events, local times on hover, confirmations,
// and the Submit form's fields following the chosen model.
// Plain JavaScript, no framework, no inline code (the pages' Content-Security-Policy forbids it).
(function () {
  "use strict";

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when.getTime())) el.title = when.toLocaleString();
    });
  }

  function confirmations(root) {
    root.querySelectorAll("button[data-action='reprocess-all']").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm("Apply every stored delivery that is not applied now?")) event.preventDefault();
      });
    });
  }

  function parse(html) {
    var template = document.createElement("template");
    template.innerHTML = html; // server-rendered and escaped by the same templates as the page
    return template.content;
  }

  // Replace `selector` in the page by the same element of a fresh server rendering of `url`.
  // `keep(old, fresh)` may move unchanged parts of the old tree into the new one (a playing video).
  function refresher(selector, url, keep) {
    var busy = false;
    var again = false;
    var indicator = document.getElementById("live-indicator");
    function run() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (response.status === 401 || response.redirected) {
            if (indicator) indicator.dataset.state = "off";
            return null;
          }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html === null) return;
          var fresh = parse(html).querySelector(selector);
          var old = document.querySelector(selector);
          if (!fresh || !old) return;
          if (keep) keep(old, fresh);
          old.replaceWith(fresh);
          localTimes(fresh);
          confirmations(fresh);
        })
        .catch(function () { /* the next change tries again */ })
        .finally(function () {
          busy = false;
          if (again) { again = false; setTimeout(run, 250); }
        });
    }
    return run;
  }

  // The Submit form: another model swaps in that model's fields (durations, resolutions, ...), keeping
  // the values it also allows and the prompt; without this script, "Show its options" does the same.
  function submitForm() {
    var select = document.getElementById("model");
    var form = document.getElementById("submit-form");
    if (!select || !form || !select.dataset.fields) return;
    var button = document.getElementById("model-show");
    if (button) button.hidden = true;
    var latest = 0;
    select.addEventListener("change", function () {
      var asked = ++latest;
      var query = new URLSearchParams();
      query.set("model", select.value);
      ["duration", "resolution", "aspect_ratio", "audio", "seed"].forEach(function (name) {
        var field = form.elements.namedItem(name);
        if (field && field.value) query.set(name, field.value);
      });
      fetch(select.dataset.fields + "&" + query.toString(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok && !response.redirected ? response.text() : null; })
        .then(function (html) {
          if (html === null || asked !== latest) return;
          var fresh = parse(html).querySelector("#model-fields");
          var old = document.getElementById("model-fields");
          if (fresh && old) old.replaceWith(fresh);
          history.replaceState(null, "", "/ui/submit?model=" + encodeURIComponent(select.value));
        })
        .catch(function () { if (button) button.hidden = false; });
    });
  }

  function keepPlayingOutputs(old, fresh) {
    var before = old.querySelector("#outputs");
    var after = fresh.querySelector("#outputs");
    if (before && after && before.dataset.sig === after.dataset.sig) after.replaceWith(before);
  }

  function start() {
    localTimes(document);
    confirmations(document);
    submitForm();
    var table = document.getElementById("jobs-table");
    var job = document.getElementById("job-live");
    var ops = document.getElementById("ops-live");
    if (!table && !job && !ops) return;
    if (!window.EventSource) return;
    var indicator = document.getElementById("live-indicator");
    var refreshTable = table ? refresher("#jobs-table", table.dataset.refresh) : null;
    var refreshJob = job ? refresher("#job-live", job.dataset.refresh, keepPlayingOutputs) : null;
    var source = new EventSource("/ui/events");
    source.addEventListener("open", function () { if (indicator) indicator.dataset.state = "on"; });
    source.addEventListener("error", function () { if (indicator) indicator.dataset.state = "retry"; });
    source.addEventListener("change", function (event) {
      var change;
      try { change = JSON.parse(event.data); } catch (e) { return; }
      var ids = change.jobs || [];
      if (refreshTable) {
        var current = document.getElementById("jobs-table");
        var shown = ids.some(function (id) {
          return current && current.querySelector("tr[data-job='" + CSS.escape(id) + "']");
        });
        var firstPage = current && current.dataset.firstPage === "1";
        if (change.all || shown || (firstPage && ids.length)) refreshTable();
      }
      if (refreshJob && (change.all || ids.indexOf(job.dataset.job) !== -1)) refreshJob();
      if (ops && (change.all || ids.length || change.deliveries)) {
        var note = document.getElementById("ops-changed");
        if (note) note.hidden = false;
      }
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
