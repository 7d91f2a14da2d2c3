// The usage chart: CPU hours per user per day, stacked, from the page's json_script data.
document.addEventListener("DOMContentLoaded", () => {
  const data = JSON.parse(document.getElementById("usage-data").textContent);
  const palette = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#84cc16", "#ec4899"];
  data.datasets.forEach((d, i) => { d.backgroundColor = palette[i % palette.length]; d.borderWidth = 0; });
  const day = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
  new window.Chart(document.getElementById("usage-chart"), {
    type: "bar",
    data: { labels: data.labels.map((l) => day.format(new Date(l + "T12:00:00"))), datasets: data.datasets },
    options: {
      maintainAspectRatio: false,
      animation: false,
      scales: { x: { stacked: true, grid: { display: false } }, y: { stacked: true, beginAtZero: true, title: { display: true, text: "CPU hours" } } },
      plugins: { legend: { position: "bottom" } },
    },
  });
});
