// How numbers, times and sizes read on the page.

export function usd(value) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  const n = Number(value);
  // Cents, unless the amount has finer digits (prices like $0.035 stay exact).
  const cents = Math.abs(n * 100 - Math.round(n * 100)) < 1e-9;
  const digits = cents ? 2 : Math.min(6, String(n).split(".")[1]?.length ?? 2);
  return `$${n.toFixed(digits)}`;
}

export function seconds(ms) {
  if (ms === null || ms === undefined) return "—";
  const s = Math.max(0, ms) / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.floor(s % 60)} s`;
}

export function dateTime(ms) {
  if (!ms) return "—";
  const d = new Date(ms);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  const time = d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
  return sameDay ? time : `${d.toLocaleDateString()} ${time}`;
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function shortId(taskId) {
  return taskId.length > 12 ? `${taskId.slice(0, 8)}…${taskId.slice(-4)}` : taskId;
}
