// procfs.mjs: what the benchmarks read about a process from /proc: CPU time (nanoseconds, summed over
// its threads from schedstat, which is exact where utime/stime tick at 10 ms), resident memory and
// open file descriptors.
import fs from 'node:fs';

// CPU time the process has spent on a core, in ns, over all its threads (live ones; a thread that has
// exited since is not counted, which the benchmarks avoid by measuring long-lived processes only).
export function cpuNs(pid) {
  let total = 0;
  let tasks;
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  for (const t of tasks) {
    try {
      total += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch { /* thread gone */ }
  }
  return total;
}

// CPU ns of a process and all its descendants (nginx workers, PostgreSQL backends). Descendants that
// exited during a measurement take their time with them, so use this for long-lived process trees.
export function cpuNsTree(pid, depth = 0) {
  let total = cpuNs(pid);
  if (total == null) return null;
  if (depth > 3) return total;
  let tasks = [];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch { /* gone */ }
  for (const t of tasks) {
    let kids = '';
    try {
      kids = fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
    } catch { /* gone */ }
    for (const k of kids ? kids.split(/\s+/) : []) total += cpuNsTree(Number(k), depth + 1) ?? 0;
  }
  return total;
}

// Resident set size in bytes (VmRSS), or null when the process is gone.
export function rssBytes(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

export function openFds(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

export function threads(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).length;
  } catch {
    return null;
  }
}

// CPU ns of several processes at once: {name: ns}.
export function cpuOf(procs) {
  const out = {};
  for (const [name, pid] of Object.entries(procs)) out[name] = pid ? cpuNsTree(pid) : null;
  return out;
}

export function machineInfo() {
  let model = '';
  try {
    model = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
  } catch { /* not Linux */ }
  let kernel = '';
  try {
    kernel = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch { /* not Linux */ }
  let memKb = 0;
  try {
    memKb = Number(/MemTotal:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))[1]);
  } catch { /* not Linux */ }
  return { cpus: (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/gm) || []).length, model, kernel,
    mem_gib: Math.round(memKb / 1048576) };
}
