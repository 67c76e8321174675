// Draws every .chart[data-figure] element of the page with Plotly (loaded before this file):
// data-figure names the json_script element that holds the figure. data-mode-bar="off" hides
// Plotly's tool bar for that chart.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".chart[data-figure]").forEach(function (element) {
    var figure = JSON.parse(document.getElementById(element.dataset.figure).textContent);
    var config = {responsive: true, displaylogo: false};
    if (element.dataset.modeBar === "off") config.displayModeBar = false;
    Plotly.newPlot(element, figure.data, figure.layout, config);
  });
});
