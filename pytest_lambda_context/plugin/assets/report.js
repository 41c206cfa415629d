// pytest-lambda-context HTML report: hover details and the filter by test.
(function () {
  "use strict";
  var sections = Array.prototype.slice.call(document.querySelectorAll("section.function"));
  var tip = document.getElementById("tip");
  var tests = document.getElementById("test-filter");
  var functionSelect = document.getElementById("function-filter");
  var failedOnly = document.getElementById("failed-filter");
  var shown = document.getElementById("shown");

  function dataOf(section) {
    if (!section.lcData) {
      section.lcData = JSON.parse(section.querySelector("script.data").textContent);
    }
    return section.lcData;
  }

  function row(name, value) {
    var tr = document.createElement("tr");
    var th = document.createElement("th");
    var td = document.createElement("td");
    th.textContent = name;
    td.textContent = value;
    tr.appendChild(th);
    tr.appendChild(td);
    return tr;
  }

  function ms(value) {
    return value === undefined || value === null ? null : value + " ms";
  }

  function connectionText(c) {
    var where = c.frame || "no line of the function's code on the stack";
    return c.address + " opened at " + where + (c.phase === "init" ? " (init)" : "");
  }

  function clientText(c) {
    var where = c.frame || "no line of the function's code on the stack";
    return c.service + " created at " + where + (c.phase === "init" ? " (init)" : "");
  }

  function showTip(event, bar, connection, client) {
    tip.textContent = "";
    var head = document.createElement("div");
    head.className = "kind";
    head.textContent = bar.title;
    tip.appendChild(head);
    var table = document.createElement("table");
    var rows = [
      ["request id", bar.request_id],
      ["invocations", bar.invocations],
      ["request ids", bar.request_ids],
      ["duration median", ms(bar.duration_median_ms)],
      ["duration max", ms(bar.duration_max_ms)],
      ["environment", bar.environment + (bar.initialization_type && bar.initialization_type !== "on-demand" ? " (" + bar.initialization_type + ")" : "")],
      ["test", bar.test],
      ["duration", ms(bar.duration_ms)],
      [bar.invocations ? "billed in all" : "billed duration", ms(bar.billed_duration_ms)],
      ["init duration", ms(bar.init_duration_ms)],
      ["restore duration", ms(bar.restore_duration_ms)],
      ["error", bar.error_type ? bar.error_type + ": " + bar.error_message : null],
      ["async attempt", bar.attempt ? "retry " + bar.attempt + " of 2 (Lambda's retry of a failed event)" : null],
      ["shut down", bar.shutdown_reason ? (bar.shutdown_reason !== "closed" ? bar.shutdown_reason + ": " : "") + (bar.shutdown_kind || "") : null],
      ["marked", bar.marked]
    ];
    rows.forEach(function (r) {
      if (r[1] !== undefined && r[1] !== null && r[1] !== "") table.appendChild(row(r[0], r[1]));
    });
    var one = connection || client;
    var list = one ? (connection ? [connection] : []) : bar.connections;
    list.forEach(function (c, i) {
      table.appendChild(row(i === 0 ? (connection ? "connection" : "connections") : "", connectionText(c)));
    });
    var clients = one ? (client ? [client] : []) : (bar.clients || []);
    clients.forEach(function (c, i) {
      table.appendChild(row(i === 0 ? (client ? "boto3 client" : "boto3 clients") : "", clientText(c)));
    });
    if (!one && list.length === 0 && clients.length === 0) table.appendChild(row("connections", "none opened"));
    tip.appendChild(table);
    tip.hidden = false;
    moveTip(event);
  }

  function moveTip(event) {
    var x = event.clientX + 14;
    var y = event.clientY + 14;
    var box = tip.getBoundingClientRect();
    if (x + box.width > window.innerWidth - 8) x = Math.max(8, event.clientX - box.width - 14);
    if (y + box.height > window.innerHeight - 8) y = Math.max(8, event.clientY - box.height - 14);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }

  sections.forEach(function (section) {
    var svg = section.querySelector("svg.chart");
    function target(event) {
      var node = event.target;
      while (node && node !== svg && !(node.getAttribute && node.getAttribute("data-b"))) node = node.parentNode;
      return node && node !== svg ? node : null;
    }
    function over(event) {
      var node = target(event);
      if (!node) { tip.hidden = true; return; }
      var bar = dataOf(section).bars[Number(node.getAttribute("data-b"))];
      var c = node.getAttribute("data-c");
      var k = node.getAttribute("data-k");
      showTip(event, bar, c === null ? null : bar.connections[Number(c)],
        k === null ? null : bar.clients[Number(k)]);
    }
    svg.addEventListener("mouseover", over);
    svg.addEventListener("focusin", function (event) {
      var box = event.target.getBoundingClientRect();
      over({ target: event.target, clientX: box.right, clientY: box.bottom });
    });
    svg.addEventListener("mousemove", function (event) { if (!tip.hidden) moveTip(event); });
    svg.addEventListener("mouseleave", function () { tip.hidden = true; });
    svg.addEventListener("focusout", function () { tip.hidden = true; });
  });

  function setFigures(section, figures) {
    Array.prototype.forEach.call(section.querySelectorAll("[data-figure]"), function (dd) {
      var value = figures[dd.getAttribute("data-figure")];
      dd.textContent = value === null || value === undefined ? "\u2014" : String(value);
    });
  }

  function filter(test, name, failed) {
    var functions = 0;
    var invocations = 0;
    sections.forEach(function (section) {
      var data = dataOf(section);
      var svg = section.querySelector("svg.chart");
      var segments = Array.prototype.slice.call(svg.querySelectorAll("g.segment"));
      var matching = segments.filter(function (g) {
        return (!test || g.getAttribute("data-test") === test) &&
          (!failed || g.classList.contains("failed"));
      });
      segments.forEach(function (g) { g.style.display = matching.indexOf(g) >= 0 ? "" : "none"; });
      section.hidden = matching.length === 0 || (name && section.getAttribute("data-function") !== name);
      if (section.hidden) return;
      functions += 1;
      var figures = test ? data.test_figures[test] : failed ? data.failed_figures : data.figures;
      invocations += figures.invocations;
      setFigures(section, figures);
      // Zoomed to the parts shown (one test's, or the failed tests' first to last).
      var zoom = test || failed;
      var x0 = zoom ? Number(matching[0].getAttribute("data-x0")) : 0;
      var x1 = zoom ? Number(matching[matching.length - 1].getAttribute("data-x1")) : data.width;
      var height = Number(svg.getAttribute("height"));
      svg.setAttribute("viewBox", x0 + " 0 " + (x1 - x0) + " " + height);
      svg.setAttribute("width", String(x1 - x0));
    });
    shown.textContent = "shown: " + functions + (functions === 1 ? " function, " : " functions, ") +
      invocations + (invocations === 1 ? " invocation" : " invocations");
    document.body.setAttribute("data-filter", [
      name ? "function=" + name : "", test ? "test=" + test : "", failed ? "failed" : ""
    ].filter(Boolean).join(" "));
  }

  function choose(select, value) {
    var known = Array.prototype.some.call(select.options, function (o) { return o.value === value; });
    select.value = known ? value : "";
  }

  // #function=NAME&test=NODEID: a link to one view of the report.
  function fromHash() {
    var wanted = {};
    window.location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var at = part.indexOf("=");
      if (at > 0) wanted[part.slice(0, at)] = decodeURIComponent(part.slice(at + 1));
    });
    choose(tests, wanted.test || "");
    choose(functionSelect, wanted["function"] || "");
    failedOnly.checked = wanted.failed === "1" && !failedOnly.disabled;
    filter(tests.value, functionSelect.value, failedOnly.checked);
  }

  function changed() {
    var parts = [];
    if (functionSelect.value) parts.push("function=" + encodeURIComponent(functionSelect.value));
    if (tests.value) parts.push("test=" + encodeURIComponent(tests.value));
    if (failedOnly.checked) parts.push("failed=1");
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, "", "#" + parts.join("&"));
    }
    filter(tests.value, functionSelect.value, failedOnly.checked);
  }

  tests.addEventListener("change", changed);
  failedOnly.addEventListener("change", changed);
  functionSelect.addEventListener("change", changed);
  window.addEventListener("hashchange", fromHash);
  fromHash();
  document.body.setAttribute("data-ready", "true");
})();
