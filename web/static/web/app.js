// Live lint, live progress and review shortcuts: plain JavaScript, no build step.
(function () {
  "use strict";

  function strings() {
    var node = document.getElementById("js-strings");
    return node ? JSON.parse(node.textContent) : {};
  }

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function format(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (_, key) { return String(values[key]); });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;  // textContent: never HTML
    return node;
  }

  // --- live lint: the caption, its token count and where each key term falls -----------------
  function setupLint(form) {
    var t = strings();
    var panel = document.getElementById("lint-panel");
    var timer = null;
    var sequence = 0;

    function values() {
      var out = {};
      form.querySelectorAll("[data-variable]").forEach(function (input) {
        var value = input.value.trim();
        if (value !== "" || input.required) out[input.name] = value;
      });
      return out;
    }

    function render(lint) {
      panel.querySelector(".caption-preview").textContent = lint.caption || "—";
      var limit = lint.context_length, key = lint.key_position_limit;
      var scale = Math.max(limit + 3, lint.token_count + 3);
      panel.querySelector(".token-count").textContent = format(t.tokens, { count: lint.token_count });
      var bar = panel.querySelector(".tokenbar");
      bar.replaceChildren();
      var fill = el("div", "fill" + (lint.token_count > limit ? " over" : ""));
      fill.style.width = (100 * lint.token_count / scale) + "%";
      bar.appendChild(fill);
      [[key, t.keyMark], [limit, t.limitMark]].forEach(function (mark) {
        var line = el("div", "mark");
        line.style.left = (100 * mark[0] / scale) + "%";
        line.appendChild(el("span", "", mark[1]));
        bar.appendChild(line);
      });
      // One row per variable, in caption order, so neighbouring terms never overlap.
      var names = Object.keys(lint.positions).sort(function (a, b) {
        return lint.positions[a] - lint.positions[b];
      });
      bar.style.height = (0.5 + 1.5 * Math.max(1, names.length)) + "rem";
      names.forEach(function (name, row) {
        var position = lint.positions[name];
        var isKey = lint.key_variables.indexOf(name) >= 0;
        var chip = el("div", "term" + (isKey ? (position > key ? " late" : "") : " plain"), name + " @" + position);
        chip.style.left = (100 * position / scale) + "%";
        chip.style.top = (0.3 + 1.5 * row) + "rem";
        chip.dataset.term = name;
        bar.appendChild(chip);
      });
      var list = panel.querySelector(".findings");
      list.replaceChildren();
      if (!lint.findings.length) list.appendChild(el("li", "info", t.noFindings));
      lint.findings.forEach(function (finding) {
        var item = el("li", finding.severity);
        item.appendChild(el("strong", "", finding.severity_title + ": " + finding.title));
        item.appendChild(el("div", "muted", finding.message));
        list.appendChild(item);
      });
      panel.dataset.state = lint.ok ? "ok" : "errors";
    }

    function run() {
      var mine = ++sequence;
      fetch(form.dataset.lintUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify({ values: values(), language: form.dataset.language }),
      }).then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.json();
      }).then(function (lint) {
        if (mine === sequence) render(lint);
      }).catch(function () {
        panel.querySelector(".caption-preview").textContent = t.unavailable;
      });
    }

    form.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(run, 250);
    });
    run();
  }

  // --- live progress: poll the request until every variation is finished ---------------------
  function setupProgress(node) {
    var t = strings();
    var terminal = ["succeeded", "failed", "cancelled"];
    function poll() {
      fetch(node.dataset.pollUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.json(); })
        .then(function (request) {
          var done = true;
          request.jobs.forEach(function (job) {
            var row = node.querySelector("[data-job='" + job.id + "']");
            if (!row) return;
            row.querySelector("progress").value = job.progress;
            var status = row.querySelector(".badge");
            status.textContent = t[job.status] || job.status;
            status.className = "badge " + job.status;
            row.querySelector(".scales").textContent =
              job.scales_total ? format(t.scales, { done: job.scales_done, total: job.scales_total }) : "";
            if (terminal.indexOf(job.status) < 0) done = false;
          });
          if (done) {
            if (node.dataset.finished !== "1") window.location.reload();
          } else {
            setTimeout(poll, 1000);
          }
        })
        .catch(function () { setTimeout(poll, 3000); });
    }
    poll();
  }

  // --- review shortcuts: A approve, R reject, C request changes, N next, 1-9 tick -----------
  function setupShortcuts() {
    document.addEventListener("keydown", function (event) {
      var comment = document.getElementById("comment");
      if (event.target === comment && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        var intent = comment.dataset.intent === "changes" ? "changes-button" : "reject-button";
        var button = document.getElementById(intent);
        if (button) { event.preventDefault(); button.click(); }
        return;
      }
      var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName) && event.target.type !== "checkbox";
      if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
      var key = event.key.toLowerCase();
      var ticks = document.querySelectorAll(".checklist input[type=checkbox]");
      if (/^[1-9]$/.test(key) && ticks[Number(key) - 1]) {
        ticks[Number(key) - 1].checked = !ticks[Number(key) - 1].checked;
      } else if (key === "a" && document.getElementById("approve-button")) {
        document.getElementById("approve-button").click();
      } else if ((key === "r" || key === "c") && document.getElementById("comment")) {
        document.getElementById("comment").focus();
        document.getElementById("comment").dataset.intent = key === "r" ? "reject" : "changes";
      } else if (key === "n") {
        var next = document.getElementById("next-link");
        if (next) window.location = next.href;
      } else {
        return;
      }
      event.preventDefault();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form[data-lint-url]");
    if (form) setupLint(form);
    var progress = document.querySelector("[data-poll-url]");
    if (progress) setupProgress(progress);
    if (document.body.dataset.shortcuts === "review") setupShortcuts();
  });
})();
