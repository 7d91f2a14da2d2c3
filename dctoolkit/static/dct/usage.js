// The usage charts: CPU hours per user per day, and per accounting group, stacked, from the page's json_script data.
document.addEventListener("DOMContentLoaded", () => {
  const data = JSON.parse(document.getElementById("usage-data").textContent);
  const palette = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#84cc16", "#ec4899"];
  const day = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
  const labels = data.labels.map((l) => day.format(new Date(l + "T12:00:00")));
  const draw = (canvas, datasets) => {
    if (!canvas) return;  // the group chart is there only when groups are
    datasets.forEach((d, i) => { d.backgroundColor = palette[i % palette.length]; d.borderWidth = 0; });
    new window.Chart(canvas, {
      type: "bar",
      data: { labels, datasets },
      options: {
        maintainAspectRatio: false,
        animation: false,
        scales: { x: { stacked: true, grid: { display: false } }, y: { stacked: true, beginAtZero: true, title: { display: true, text: "CPU hours" } } },
        plugins: { legend: { position: "bottom" } },
      },
    });
  };
  draw(document.getElementById("usage-chart"), data.datasets);
  draw(document.getElementById("usage-group-chart"), data.group_datasets || []);
});
