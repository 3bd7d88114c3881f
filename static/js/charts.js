// keymeter's charts: every <canvas data-chart="…" data-source="id"> is drawn from the
// JSON in <script type="application/json" id="id"> (rendered with json_script; the
// CSP allows no inline scripts). Money arrives as exact decimal strings.
"use strict";

(function () {
  var PALETTE = ["#1f4fd1", "#12b76a", "#f79009", "#7a5af8", "#ee46bc", "#06aed4",
                 "#667085", "#b42318"];
  var LEVEL = { ok: "#12b76a", warning: "#f79009", over: "#d92d20" };
  var lang = document.documentElement.lang || "en";

  function money(value) {
    var n = Number(value);
    var digits = Math.abs(n) >= 1 || n === 0 ? 2 : 4;
    return new Intl.NumberFormat(lang, {
      style: "currency", currency: "USD", currencyDisplay: "narrowSymbol",
      minimumFractionDigits: 2, maximumFractionDigits: digits
    }).format(n);
  }

  function integer(value) {
    return new Intl.NumberFormat(lang).format(value);
  }

  function shortDay(iso) {
    // Labels are calendar days (no time zone): format them as UTC so they do not shift.
    var d = new Date(iso + "T00:00:00Z");
    if (isNaN(d)) { return iso; }
    return new Intl.DateTimeFormat(lang, { month: "short", day: "numeric", timeZone: "UTC" })
      .format(d);
  }

  function hourLabel(iso) {
    // Server-local wall clock, as the rollups cut hours: "2024-05-01T13:00:00+02:00".
    return iso.slice(11, 16);
  }

  function numbers(list) {
    return list.map(function (v) { return v === null ? null : Number(v); });
  }

  function moneyAxis(stacked) {
    return {
      stacked: stacked, beginAtZero: true,
      ticks: { callback: function (v) { return money(v); } },
      grid: { color: "#eaecf0" }
    };
  }

  function baseOptions() {
    return {
      responsive: true, maintainAspectRatio: false, animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12, usePointStyle: true } } }
    };
  }

  function moneyTooltip(options) {
    options.plugins.tooltip = {
      callbacks: {
        label: function (ctx) { return ctx.dataset.label + ": " + money(ctx.raw); }
      }
    };
    return options;
  }

  function stacked(canvas, data) {
    var options = moneyTooltip(baseOptions());
    options.scales = {
      x: { stacked: true, grid: { display: false },
           ticks: { autoSkip: true, maxRotation: 0,
                    callback: function (i) { return shortDay(data.labels[i]); } } },
      y: moneyAxis(true)
    };
    return new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: data.datasets.map(function (ds, i) {
          return { label: ds.label, data: numbers(ds.data), borderRadius: 2,
                   backgroundColor: PALETTE[i % PALETTE.length] };
        })
      },
      options: options
    });
  }

  function explorer(canvas, data) {
    var horizontal = data.horizontal;
    var options = moneyTooltip(baseOptions());
    options.plugins.legend = { display: false };
    options.indexAxis = horizontal ? "y" : "x";
    var category = { grid: { display: false }, ticks: { autoSkip: true, maxRotation: 0 } };
    if (!horizontal) {
      category.ticks.callback = function (i) { return shortDay(data.labels[i]); };
    }
    options.scales = horizontal ? { y: category, x: moneyAxis(false) }
                                : { x: category, y: moneyAxis(false) };
    return new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: data.datasets.map(function (ds) {
          return { label: ds.label, data: numbers(ds.data), backgroundColor: PALETTE[0],
                   borderRadius: 2 };
        })
      },
      options: options
    });
  }

  function health(canvas, data) {
    var labels = canvas.dataset;
    var options = baseOptions();
    options.scales = {
      x: { grid: { display: false },
           ticks: { autoSkip: true, maxRotation: 0,
                    callback: function (i) { return hourLabel(data.labels[i]); } } },
      y: { beginAtZero: true, position: "left", grid: { color: "#eaecf0" },
           ticks: { callback: function (v) { return integer(v); } },
           title: { display: true, text: labels.callsLabel } },
      y1: { beginAtZero: true, position: "right", grid: { display: false },
            ticks: { callback: function (v) { return integer(v) + " ms"; } },
            title: { display: true, text: labels.latencyLabel } }
    };
    options.plugins.tooltip = {
      callbacks: {
        title: function (items) {
          var iso = data.labels[items[0].dataIndex];
          return iso.slice(0, 10) + " " + iso.slice(11, 16);
        },
        label: function (ctx) {
          if (ctx.raw === null) { return ctx.dataset.label + ": —"; }
          var unit = ctx.dataset.yAxisID === "y1" ? " ms" : "";
          return ctx.dataset.label + ": " + integer(ctx.raw) + unit;
        }
      }
    };
    return new window.Chart(canvas, {
      data: {
        labels: data.labels,
        datasets: [
          { type: "bar", label: labels.callsLabel, data: data.calls, backgroundColor: "#b2c8f7",
            yAxisID: "y", stack: "calls", order: 2 },
          { type: "bar", label: labels.errorsLabel, data: data.errors, backgroundColor: "#d92d20",
            yAxisID: "y", stack: "errors", order: 2 },
          { type: "line", label: labels.avgLabel, data: data.latency_avg, borderColor: "#7a5af8",
            backgroundColor: "#7a5af8", yAxisID: "y1", pointRadius: 0, spanGaps: true,
            tension: 0.25, order: 1 },
          { type: "line", label: labels.maxLabel, data: data.latency_max, borderColor: "#f79009",
            backgroundColor: "#f79009", borderDash: [4, 3], yAxisID: "y1", pointRadius: 0,
            spanGaps: true, order: 1 }
        ]
      },
      options: options
    });
  }

  function gauge(canvas, data) {
    var colour = LEVEL[data.level] || LEVEL.ok;
    return new window.Chart(canvas, {
      type: "doughnut",
      data: {
        labels: [canvas.dataset.spentLabel, canvas.dataset.forecastLabel,
                 canvas.dataset.leftLabel],
        datasets: [{
          data: numbers(data.parts),
          backgroundColor: [colour, colour + "55", "#eaecf0"],
          borderWidth: 0
        }]
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        rotation: -90, circumference: 180, cutout: "72%",
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: function (ctx) { return money(ctx.raw); } } }
        }
      }
    });
  }

  var KINDS = { "stacked-spend": stacked, explorer: explorer, health: health, gauge: gauge };

  function draw() {
    if (!window.Chart) { return; }
    window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    window.Chart.defaults.color = "#4f5a6b";
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.source);
      var kind = KINDS[canvas.dataset.chart];
      if (!source || !kind) { return; }
      kind(canvas, JSON.parse(source.textContent));
      canvas.setAttribute("data-drawn", "true");
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
