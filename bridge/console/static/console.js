// The Pool page's chart: uPlot over the series the page carries as JSON
// (the same figures are in the table under it, for screen readers and no-JS).
(function () {
  "use strict";
  var holder = document.getElementById("pool-chart");
  var data = document.getElementById("pool-series");
  if (!holder || !data || typeof uPlot === "undefined") { return; }
  var s = JSON.parse(data.textContent);
  if (!s.t.length) { return; }
  function size() { return { width: Math.max(280, holder.clientWidth), height: 288 }; }
  var chart = new uPlot(Object.assign(size(), {
    title: "Numbers in use and in the pool",
    series: [
      {},
      { label: "in use", stroke: "#0b5cad", width: 2, fill: "rgba(11,92,173,0.12)" },
      { label: "in the pool", stroke: "#1b1f24", width: 2, dash: [6, 4] },
      { label: "quarantined", stroke: "#7a4b00", width: 1 }
    ],
    axes: [{}, { label: "numbers" }],
    scales: { y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } }
  }), [s.t, s.in_use, s.active, s.quarantined], holder);
  window.addEventListener("resize", function () { chart.setSize(size()); });
})();
