// The analysts' console: the live strip's refresh, and the queue's keyboard shortcuts.
// Every page works without it.
(function () {
  "use strict";

  // The live strip: the stream's figures every 2 seconds, while the page is visible.
  function startLive() {
    var strip = document.getElementById("live");
    if (!strip || !window.fetch) {
      return;
    }
    var timer = null;
    function show(data) {
      var fields = {
        payments_per_second: data.payments_per_second.toFixed(1),
        flagged_per_second: data.flagged_per_second.toFixed(1),
        lag: String(data.lag)
      };
      Object.keys(fields).forEach(function (k) {
        var el = strip.querySelector('[data-live="' + k + '"]');
        if (el) {
          el.textContent = fields[k];
        }
      });
    }
    function refresh() {
      if (document.hidden) {
        return;
      }
      fetch("/ui/live.json", { credentials: "same-origin", cache: "no-store" })
        .then(function (resp) {
          if (resp.status === 401) {
            window.clearInterval(timer); // signed out: the next page asks to sign in
            throw new Error("signed out");
          }
          if (!resp.ok) {
            throw new Error("status " + resp.status);
          }
          return resp.json();
        })
        .then(function (data) {
          show(data);
          strip.classList.remove("stale");
        })
        .catch(function () {
          strip.classList.add("stale");
        });
    }
    timer = window.setInterval(refresh, 2000);
  }

  function typing(el) {
    if (!el) {
      return false;
    }
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  // The queue: j/k move, Enter or o open, f/l decide, / filters by card, ? shows the help.
  function startQueue() {
    var table = document.getElementById("queue");
    if (!table) {
      return;
    }
    var rows = Array.prototype.slice.call(table.querySelectorAll("tr.case"));
    var help = document.getElementById("help");
    var hint = document.getElementById("keys-hint");
    if (hint) {
      hint.hidden = false;
    }
    var at = -1;

    function select(i) {
      if (rows.length === 0) {
        return;
      }
      i = Math.max(0, Math.min(rows.length - 1, i));
      if (at >= 0) {
        rows[at].classList.remove("selected");
        rows[at].setAttribute("aria-selected", "false");
      }
      at = i;
      rows[at].classList.add("selected");
      rows[at].setAttribute("aria-selected", "true");
      rows[at].scrollIntoView({ block: "nearest" });
    }

    function submit(selector) {
      if (at < 0) {
        return;
      }
      var form = rows[at].querySelector(selector);
      if (!form) {
        return; // a viewer, or a case already decided
      }
      if (form.requestSubmit) {
        form.requestSubmit();
      } else {
        form.submit();
      }
    }

    rows.forEach(function (row, i) {
      row.addEventListener("click", function (e) {
        if (e.target.closest("a, button, form")) {
          return;
        }
        select(i);
      });
    });

    document.addEventListener("keydown", function (e) {
      if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) {
        return;
      }
      switch (e.key) {
        case "j":
          select(at + 1);
          break;
        case "k":
          select(at < 0 ? 0 : at - 1);
          break;
        case "Enter":
        case "o":
          if (at < 0 || e.target.closest("a, button")) {
            return; // Enter on a focused link or button does its own thing
          }
          var link = rows[at].querySelector("a.case-link");
          if (link) {
            window.location.href = link.href;
          }
          break;
        case "f":
          submit("form.quick-fraud");
          break;
        case "l":
          submit("form.quick-legitimate");
          break;
        case "/":
          var card = document.getElementById("filter-card");
          if (card) {
            card.focus();
            card.select();
          }
          break;
        case "?":
          if (help) {
            help.hidden = !help.hidden;
          }
          break;
        case "Escape":
          if (help) {
            help.hidden = true;
          }
          return;
        default:
          return;
      }
      e.preventDefault();
    });
  }

  function start() {
    startLive();
    startQueue();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
