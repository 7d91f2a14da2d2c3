// dctoolkit portal: times in the viewer's zone, and keeping live parts pleasant across htmx swaps.
(function () {
  "use strict";
  const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

  // <time datetime="ISO"> -> local date and time; class "ago" -> "5 seconds ago" (absolute in the tooltip).
  function formatTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((el) => {
      const when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      el.title = absolute.format(when) + " (" + Intl.DateTimeFormat().resolvedOptions().timeZone + ")";
      el.textContent = absolute.format(when);
    });
  }

  // Which stdout/stderr tab is open, and whether a log was scrolled to its end, survive a refresh.
  let openPane = null;
  const stuckToEnd = {};
  document.addEventListener("shown.bs.tab", (e) => { openPane = e.target.getAttribute("data-bs-target"); });
  document.addEventListener("htmx:beforeSwap", () => {
    document.querySelectorAll(".tab-pane pre.dct-log").forEach((pre) => {
      stuckToEnd[pre.parentElement.id] = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 30;
    });
  });
  function restoreLogs(root) {
    if (openPane && window.bootstrap) {
      const button = root.querySelector('[data-bs-target="' + openPane + '"]');
      if (button) window.bootstrap.Tab.getOrCreateInstance(button).show();
    }
    root.querySelectorAll(".tab-pane pre.dct-log").forEach((pre) => {
      if (stuckToEnd[pre.parentElement.id] !== false) pre.scrollTop = pre.scrollHeight;
    });
  }

  // The submit page shows the fields of the chosen mode only.
  function wireSubmitForm(root) {
    root.querySelectorAll("form.dct-submit").forEach((form) => {
      const show = () => { form.dataset.active = form.querySelector('input[name="mode"]:checked')?.value || "program"; };
      form.querySelectorAll('input[name="mode"]').forEach((r) => r.addEventListener("change", show));
      show();
      // A folder picker's files go with their paths (a browser sends only their names): one hidden
      // field per file, in the files' order, named by the picker's data-paths.
      form.querySelectorAll("input[type=file][data-paths]").forEach((picker) => {
        const fill = () => {
          form.querySelectorAll(`input[type=hidden][name="${picker.dataset.paths}"]`).forEach((h) => h.remove());
          let last = picker;
          for (const file of picker.files) {
            const hidden = document.createElement("input");
            hidden.type = "hidden";
            hidden.name = picker.dataset.paths;
            hidden.value = file.webkitRelativePath || file.name;
            last.after(hidden);
            last = hidden;
          }
        };
        picker.addEventListener("change", fill);
        fill();
      });
    });
  }

  function onLoad(root) {
    formatTimes(root);
    restoreLogs(root);
    wireSubmitForm(root);
  }
  // htmx fires htmx:load on the body when it starts (at DOMContentLoaded, after this deferred
  // script ran) and on every element it swaps in.
  document.addEventListener("htmx:load", (e) => onLoad(e.target));
  document.addEventListener("DOMContentLoaded", () => { if (!window.htmx) onLoad(document.body); });
})();
