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
    new Chart(document.getElementById("chart-nps-" + metric), {
      type: "bar",
      data: {
        labels: blabels,
        datasets: [
          { type: "line", label: "NPS", data: buckets.map(function (b) { return b.nps; }),
            borderColor: BLUE, backgroundColor: BLUE, showLine: false, pointRadius: 5, pointStyle: "rectRot" },
          { type: "bar", label: "95 % interval", data: buckets.map(function (b) { return b.nps_ci95; }),
            backgroundColor: BAND, borderColor: "rgba(36, 86, 199, 0.5)", borderWidth: 1, barPercentage: 0.5 }
        ]
      },
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

  // Reasons, most frequent first.
  var reasons = Object.keys(data.report.reasons).map(function (k) { return [k, data.report.reasons[k]]; })
    .sort(function (a, b) { return b[1] - a[1]; });
  new Chart(document.getElementById("chart-reasons"), {
    type: "bar",
    data: { labels: reasons.map(function (r) { return r[0].charAt(0).toUpperCase() + r[0].slice(1); }),
            datasets: [{ label: "Answers", data: reasons.map(function (r) { return r[1]; }), backgroundColor: BLUE }] },
    options: { indexAxis: "y", plugins: { legend: { display: false } },
               scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } }
  });
  document.body.setAttribute("data-charts", "ready");
}());
