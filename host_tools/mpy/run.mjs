// Run a Python script on the real MicroPython interpreter (WebAssembly build
// from npm), with project files copied into its filesystem first.
//
//   node run.mjs [--heap BYTES] [--put HOSTPATH=/MP/PATH ...] SCRIPT.py
//
// --put copies a file or a whole directory (recursively, .py/.mpy only).
// Prints what the script prints; exits 1 with the traceback on stderr if the
// script raises.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "node:fs";
import path from "node:path";

const args = process.argv.slice(2);
let heap = 2 * 1024 * 1024;
const puts = [];
let script = null;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--heap") heap = parseInt(args[++i], 10);
  else if (args[i] === "--put") puts.push(args[++i]);
  else script = args[i];
}
if (!script) {
  console.error("usage: run.mjs [--heap BYTES] [--put HOST=MP ...] SCRIPT.py");
  process.exit(2);
}

let out = "";
const mp = await loadMicroPython({
  heapsize: heap,
  linebuffer: false,
  stdout: (bytes) => process.stdout.write(bytes),
  stderr: (bytes) => process.stderr.write(bytes),
});

function mkdirs(p) {
  let cur = "";
  for (const part of p.split("/").filter(Boolean)) {
    cur += "/" + part;
    try { mp.FS.mkdir(cur); } catch (e) { /* exists */ }
  }
}

function copy(host, target) {
  const st = fs.statSync(host);
  if (st.isDirectory()) {
    mkdirs(target);
    for (const name of fs.readdirSync(host)) {
      if (name === "__pycache__") continue;
      const h = path.join(host, name);
      if (fs.statSync(h).isDirectory() || /\.(py|mpy)$/.test(name)) copy(h, target + "/" + name);
    }
  } else {
    mkdirs(path.posix.dirname(target));
    mp.FS.writeFile(target, fs.readFileSync(host));
  }
}

for (const spec of puts) {
  const eq = spec.indexOf("=");
  copy(spec.slice(0, eq), spec.slice(eq + 1));
}

try {
  mp.runPython(fs.readFileSync(script, "utf8"));
} catch (e) {
  if (e.name === "PythonError") {
    process.stderr.write(String(e.message) + "\n");
    process.exit(1);
  }
  process.stderr.write(String(e && e.stack ? e.stack.split("\n").slice(0, 5).join("\n") : e) + "\n");
  process.exit(3);
}
