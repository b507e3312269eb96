/* Draws the dashboard's charts with Chart.js from the JSON the page embeds.
 * Data only: stored strings reach the page through Chart.js's canvas text, never as HTML. */
(function () {
  "use strict";
  var el = document.getElementById("dash-data");
  if (!el || typeof Chart === "undefined") { return; }
  var data = JSON.parse(el.textContent);
  var BLUE = "#2456c7", BAND = "rgba(36, 86, 199, 0.16)", GREEN = "#1b8a4b", RED = "#c0392b",
      GREY = "#9aa3b2", AMBER = "#d08c1e";
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = "#3a4354";
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.animation = false;  // figures appear at once; screenshots are stable

  function pct(x) { return x === null ? null : 100 * x; }
  function fmt(x, d) { return x === null || x === undefined ? "—" : Number(x).toFixed(d); }
  // Signed, one decimal, as the server writes it (-0 shows as +0.0 on both sides).
  function signed(x) {
    if (x === null || x === undefined) { return "—"; }
    var v = x + 0;
    return (v >= 0 ? "+" : "") + v.toFixed(1);
  }
  function signedCi(c) { return c ? signed(c[0]) + " to " + signed(c[1]) : "—"; }

  // Draws a label beside chosen points ("n = 1" by a small-n bucket).
  function pointLabels(datasetIndex, labelOf) {
    return {
      id: "pointLabels",
      afterDatasetsDraw: function (chart) {
        var meta = chart.getDatasetMeta(datasetIndex), ctx = chart.ctx;
        ctx.save();
        ctx.fillStyle = GREY;
        ctx.font = "11px " + Chart.defaults.font.family;
        ctx.textAlign = "center";
        meta.data.forEach(function (el, i) {
          var text = labelOf(i);
          if (text && el && !el.skip) { ctx.fillText(text, el.x, el.y - 10); }
        });
        ctx.restore();
      }
    };
  }

  // NPS over time with its 95 % interval as a band (hi filled down to lo).
  var line = data.timeline;
  var labels = line.map(function (p) { return p.from.slice(0, 10); });
  new Chart(document.getElementById("chart-timeline"), {
    type: "line",
    data: {
      labels: labels,
      datasets: [
        { label: "95 % interval", data: line.map(function (p) { return p.nps_ci95 ? p.nps_ci95[1] : null; }),
          borderWidth: 0, pointRadius: 0, backgroundColor: BAND, fill: "+1" },
        { label: "interval-low", data: line.map(function (p) { return p.nps_ci95 ? p.nps_ci95[0] : null; }),
          borderWidth: 0, pointRadius: 0, backgroundColor: BAND, fill: false },
        { label: "NPS", data: line.map(function (p) { return p.nps; }), borderColor: BLUE,
          backgroundColor: BLUE, pointRadius: 3, borderWidth: 2, fill: false }
      ]
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: { y: { suggestedMin: -100, suggestedMax: 100, title: { display: true, text: "NPS" } } },
      plugins: {
        legend: { labels: { filter: function (item) { return item.text !== "interval-low"; } } },
        tooltip: {
          filter: function (item) { return item.datasetIndex === 2; },
          callbacks: { afterBody: function (items) {
            var p = line[items[0].dataIndex];
            return [p.nps_ci95 ? "95 % CI " + fmt(p.nps_ci95[0], 1) + " to " + fmt(p.nps_ci95[1], 1) : "no answers",
                    "n = " + p.answered + " answers of " + p.shown + " shown"];
          } }
        }
      }
    }
  });

  // Per QoS metric: NPS with its interval (a floating bar), and response rate.
  Object.keys(data.report.by_qos).forEach(function (metric) {
    var buckets = data.report.by_qos[metric], rr = data.response_by_qos[metric];
    var blabels = data.bucket_labels[metric];
    // Small-n buckets (one or two answers): a hollow grey circle and its n, never a
    // confident diamond, since the adjusted-Wald interval may not even hold the point.
    var small = data.small_n[metric];
    new Chart(document.getElementById("chart-nps-" + metric), {
      type: "bar",
      data: {
        labels: blabels,
        datasets: [
          { type: "line", label: "NPS", data: buckets.map(function (b) { return b.nps; }),
            borderColor: BLUE, backgroundColor: BLUE, showLine: false, pointRadius: 5,
            pointStyle: small.map(function (s) { return s ? "circle" : "rectRot"; }),
            pointBorderColor: small.map(function (s) { return s ? GREY : BLUE; }),
            pointBackgroundColor: small.map(function (s) { return s ? "rgba(0, 0, 0, 0)" : BLUE; }),
            pointBorderWidth: small.map(function (s) { return s ? 2 : 1; }) },
          { type: "bar", label: "95 % interval", data: buckets.map(function (b) { return b.nps_ci95; }),
            backgroundColor: small.map(function (s) { return s ? "rgba(154, 163, 178, 0.14)" : BAND; }),
            borderColor: small.map(function (s) { return s ? "rgba(154, 163, 178, 0.6)" : "rgba(36, 86, 199, 0.5)"; }),
            borderWidth: 1, barPercentage: 0.5 }
        ]
      },
      plugins: [pointLabels(0, function (i) { return small[i] ? "n = " + buckets[i].n : null; })],
      options: {
        scales: { y: { suggestedMin: -100, suggestedMax: 100, title: { display: true, text: "NPS" } } },
        plugins: { tooltip: { callbacks: { afterBody: function (items) {
          var b = buckets[items[0].dataIndex];
          return "n = " + b.n + " answers, " + b.sessions + " sessions";
        } } } }
      }
    });
    new Chart(document.getElementById("chart-rr-" + metric), {
      type: "bar",
      data: {
        labels: blabels,
        datasets: [
          { type: "line", label: "Response rate %", data: rr.map(function (b) { return pct(b.response_rate); }),
            borderColor: AMBER, backgroundColor: AMBER, showLine: false, pointRadius: 5 },
          { type: "bar", label: "95 % interval", data: rr.map(function (b) {
              return b.response_ci95 ? [pct(b.response_ci95[0]), pct(b.response_ci95[1])] : null; }),
            backgroundColor: "rgba(208, 140, 30, 0.18)", borderColor: "rgba(208, 140, 30, 0.5)",
            borderWidth: 1, barPercentage: 0.5 }
        ]
      },
      options: {
        scales: { y: { min: 0, max: 100, title: { display: true, text: "answered / shown, %" } } },
        plugins: { tooltip: { callbacks: { afterBody: function (items) {
          var b = rr[items[0].dataIndex];
          return b.answered + " answered of " + b.shown + " shown (" + fmt(pct(b.response_rate), 1) + " %)";
        } } } }
      }
    });
  });

  // Score histogram, coloured by detractor / passive / promoter.
  var hist = data.report.score_histogram;
  new Chart(document.getElementById("chart-histogram"), {
    type: "bar",
    data: {
      labels: hist.map(function (_, i) { return String(i); }),
      datasets: [{ label: "Answers", data: hist, backgroundColor: hist.map(function (_, i) {
        return i <= 6 ? RED : (i <= 8 ? GREY : GREEN); }) }]
    },
    options: { plugins: { legend: { display: false } },
               scales: { x: { title: { display: true, text: "score" } }, y: { beginAtZero: true, ticks: { precision: 0 } } } }
  });

  // Reasons in the server's order (most given first), the order of the table beside it.
  var reasons = data.reasons_order.map(function (k) { return [k, data.report.reasons[k]]; });
  new Chart(document.getElementById("chart-reasons"), {
    type: "bar",
    data: { labels: reasons.map(function (r) { return r[0].charAt(0).toUpperCase() + r[0].slice(1); }),
            datasets: [{ label: "Answers", data: reasons.map(function (r) { return r[1]; }), backgroundColor: BLUE }] },
    options: { indexAxis: "y", plugins: { legend: { display: false } },
               scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } }
  });
  // "What quality costs" and "Who to call first" come after the rest: their read of every
  // answered survey of the period takes seconds on a big store, and the page does not
  // wait for it. "ready" once they are drawn too (or said to be unavailable).
  var costsPart = document.getElementById("costs-part");
  function chartsReady() { document.body.setAttribute("data-charts", "ready"); }
  if (!costsPart) {
    chartsReady();
  } else {
    document.body.setAttribute("data-charts", "main");
    fetch(costsPart.getAttribute("data-src"), { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error("the collector answered " + r.status); }
        return r.text();
      })
      .then(function (html) { costsPart.innerHTML = html; drawCosts(); })
      .catch(function (err) {
        var msg = document.createElement("p");
        msg.className = "error";
        msg.id = "impact-unavailable";
        msg.textContent = "Could not load this part: " + err.message;
        var loading = document.getElementById("costs-loading");
        loading.replaceChildren(loading.firstElementChild, msg);
      })
      .then(chartsReady);
  }

  // -- What quality costs ---------------------------------------------------------------------------
  function drawCosts() {
    var el2 = document.getElementById("impact-data");
    if (!el2) { return; }
    var costs = JSON.parse(el2.textContent), impact = costs.impact, whatif = costs.whatif;
    var REGS = ["rebuffer_pct", "startup_s", "bitrate_mbps", "failed", "no_start"];
    var TITLES = { rebuffer_pct: "Rebuffering (per % stalled)", startup_s: "Startup (per s)",
                   bitrate_mbps: "Bitrate (per Mbit/s)", failed: "Failed session", no_start: "Never started" };
    var UNITS = { rebuffer_pct: "%", startup_s: "s", bitrate_mbps: "Mbit/s" };
    var labels2 = REGS.map(function (r) { return TITLES[r]; });

    // Dots at each estimate, drawn over the interval bars (a forest plot).
    function dots(estimates) {
      return {
        id: "estimates",
        afterDatasetsDraw: function (chart) {
          var ctx = chart.ctx, x = chart.scales.x, y = chart.scales.y;
          ctx.save();
          // A metric with no estimate (no variation, or too few answers) says so.
          ctx.fillStyle = GREY;
          ctx.font = "12px " + Chart.defaults.font.family;
          ctx.textAlign = "center";
          ctx.textBaseline = "middle";
          estimates[0].forEach(function (v, i) {
            if (v === null && estimates[1][i] === null) {
              ctx.fillText("no estimate", (chart.chartArea.left + chart.chartArea.right) / 2, y.getPixelForValue(i));
            }
          });
          estimates.forEach(function (values, d) {
            var meta = chart.getDatasetMeta(d);
            if (meta.hidden) { return; }
            meta.data.forEach(function (bar, i) {
              if (values[i] === null || !bar) { return; }
              ctx.beginPath();
              ctx.fillStyle = d === 0 ? BLUE : "#5d6675";
              ctx.arc(x.getPixelForValue(values[i]), bar.y, 4.5, 0, 2 * Math.PI);
              ctx.fill();
            });
          });
          ctx.restore();
        }
      };
    }
    function effects(kind) { return REGS.map(function (r) { return impact.effects[kind][r]; }); }
    var adj = effects("adjusted"), unadj = effects("unadjusted");
    new Chart(document.getElementById("chart-forest"), {
      type: "bar",
      data: { labels: labels2, datasets: [
        { label: "adjusted (same region, model, firmware, content)", data: adj.map(function (e) { return e.ci95; }),
          backgroundColor: "rgba(36, 86, 199, 0.30)", borderColor: BLUE, borderWidth: 1, barPercentage: 0.8, categoryPercentage: 0.6 },
        { label: "unadjusted", data: unadj.map(function (e) { return e.ci95; }),
          backgroundColor: "rgba(154, 163, 178, 0.35)", borderColor: GREY, borderWidth: 1, barPercentage: 0.8, categoryPercentage: 0.6 }
      ] },
      plugins: [dots([adj.map(function (e) { return e.nps_points; }), unadj.map(function (e) { return e.nps_points; })])],
      options: {
        indexAxis: "y",
        scales: { x: { title: { display: true, text: "NPS points per unit (0 = no cost)" },
                       grid: { color: function (c) { return c.tick && c.tick.value === 0 ? "#3a4354" : "#e6e9ef"; } } } },
        plugins: { tooltip: { callbacks: { label: function (item) {
          var e = (item.datasetIndex === 0 ? adj : unadj)[item.dataIndex];
          return item.dataset.label + ": " + signed(e.nps_points) + " (95 % CI " + signedCi(e.ci95) + ")";
        } } } }
      }
    });

    // Recoverable points: bars from 0, the interval as a whisker; the what-if moves them.
    var rec = REGS.map(function (r) { return impact.recoverable[r]; });
    var recValues = rec.map(function (x) { return x.nps_points; }), recCi = rec.map(function (x) { return x.ci95; });
    var whisker = {
      id: "whisker",
      afterDatasetsDraw: function (chart) {
        var ctx = chart.ctx, x = chart.scales.x, meta = chart.getDatasetMeta(0);
        ctx.save();
        ctx.fillStyle = GREY;
        ctx.font = "12px " + Chart.defaults.font.family;
        ctx.textBaseline = "middle";
        recValues.forEach(function (v, i) {
          if (v === null) { ctx.fillText("no estimate", chart.chartArea.left + 6, chart.scales.y.getPixelForValue(i)); }
        });
        ctx.strokeStyle = "#1d2330";
        ctx.lineWidth = 1.5;
        meta.data.forEach(function (bar, i) {
          var c = recCi[i];
          if (!c || !bar) { return; }
          var a = x.getPixelForValue(c[0]), b = x.getPixelForValue(c[1]);
          ctx.beginPath();
          ctx.moveTo(a, bar.y); ctx.lineTo(b, bar.y);
          ctx.moveTo(a, bar.y - 5); ctx.lineTo(a, bar.y + 5);
          ctx.moveTo(b, bar.y - 5); ctx.lineTo(b, bar.y + 5);
          ctx.stroke();
        });
        ctx.restore();
      }
    };
    // The axis holds every whisker (Chart.js sizes it to the bars alone), and 0.
    function recRange() {
      var lo = 0, hi = 0;
      var all = recValues.slice();
      recCi.forEach(function (c) { if (c) { all.push(c[0], c[1]); } });
      all.forEach(function (v) {
        if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      });
      var pad = 0.05 * ((hi - lo) || 1);
      return { min: lo < 0 ? lo - pad : 0, max: hi + pad };
    }
    var recChart = new Chart(document.getElementById("chart-recoverable"), {
      type: "bar",
      data: { labels: REGS.map(function (r) { return TITLES[r].replace(/ \(.*\)$/, ""); }),
              datasets: [{ label: "NPS points won", data: recValues, backgroundColor: GREEN, barPercentage: 0.6 }] },
      plugins: [whisker],
      options: {
        indexAxis: "y",
        scales: { x: { suggestedMin: recRange().min, suggestedMax: recRange().max,
                       title: { display: true, text: "NPS points won (with 95 % interval)" } } },
        plugins: { legend: { display: false }, tooltip: { callbacks: { label: function (item) {
          return signed(recValues[item.dataIndex]) + " points (95 % CI " + signedCi(recCi[item.dataIndex]) + ")";
        } } } }
      }
    });

    Object.keys(whatif).forEach(function (metric) {
      var input = document.getElementById("whatif-" + metric);
      if (!input) { return; }
      var i = REGS.indexOf(metric), steps = whatif[metric].steps;
      var worseAbove = metric !== "bitrate_mbps";
      input.addEventListener("input", function () {
        var step = steps[Number(input.value)];
        var text = String(step.target) + " " + UNITS[metric];
        document.getElementById("whatif-" + metric + "-target").textContent = text;
        var row = document.querySelector('#recoverable tr[data-regressor="' + metric + '"]');
        row.querySelector("td.target").textContent = (worseAbove ? "at most " : "at least ") + text;
        row.querySelector("td.points").textContent = signed(step.nps_points);
        row.querySelector("td.ci").textContent = signedCi(step.ci95);
        recValues[i] = step.nps_points;
        recCi[i] = step.ci95;
        recChart.data.datasets[0].data = recValues.slice();
        var range = recRange();
        recChart.options.scales.x.suggestedMin = range.min;
        recChart.options.scales.x.suggestedMax = range.max;
        recChart.update();
        document.body.setAttribute("data-whatif", metric + ":" + input.value);
      });
    });
  }
}());
