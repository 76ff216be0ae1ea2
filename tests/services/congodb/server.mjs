// Run a CongoDB (in-memory MongoDB-wire) server for tests.
//
//   node server.mjs [--dir DIR] [--host HOST] [--port PORT] [--exit-on-stdin-eof]
//
// DIR    install dir made by install.sh (env OSMOSIS_CONGODB_DIR; default
//        ${OSMOSIS_CACHE_DIR:-$HOME/.cache/osmosis-beam}/congodb)
// HOST   env CONGODB_HOST, default 127.0.0.1
// PORT   env CONGODB_PORT, default 0 (= let the OS pick a free port)
// --exit-on-stdin-eof  stop when stdin closes (the parent process went away)
//
// Prints exactly one line `READY <port>` on stdout once listening; all other
// output goes to stderr. Stops cleanly on SIGTERM / SIGINT (exit code 0).
import path from 'node:path';
import os from 'node:os';
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const take = () => {
      if (i + 1 >= argv.length) fail(`missing value for ${a}`);
      return argv[++i];
    };
    if (a === '--dir') out.dir = take();
    else if (a === '--host') out.host = take();
    else if (a === '--port') out.port = take();
    else if (a === '--exit-on-stdin-eof') out.exitOnStdinEof = true;
    else if (a.startsWith('--dir=')) out.dir = a.slice(6);
    else if (a.startsWith('--host=')) out.host = a.slice(7);
    else if (a.startsWith('--port=')) out.port = a.slice(7);
    else fail(`unknown argument: ${a}`);
  }
  return out;
}

function fail(msg) {
  process.stderr.write(`congodb/server.mjs: ERROR: ${msg}\n`);
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));
const cacheRoot = process.env.OSMOSIS_CACHE_DIR || path.join(os.homedir(), '.cache', 'osmosis-beam');
const dir = path.resolve(args.dir || process.env.OSMOSIS_CONGODB_DIR || path.join(cacheRoot, 'congodb'));
const host = args.host || process.env.CONGODB_HOST || '127.0.0.1';
const port = Number(args.port ?? process.env.CONGODB_PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`invalid port: ${args.port ?? process.env.CONGODB_PORT}`);

const entry = path.join(dir, 'node_modules', '@push.rocks', 'smartmongo', 'dist_ts', 'congodb', 'index.js');
if (!fs.existsSync(entry)) fail(`CongoDB not installed at ${dir} (missing ${entry}); run tests/services/congodb/install.sh`);

const { CongoServer } = await import(pathToFileURL(entry).href);
const server = new CongoServer({ port, host, storage: 'memory' });

let stopping = false;
async function shutdown(reason) {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`congodb/server.mjs: stopping (${reason})\n`);
  const force = setTimeout(() => process.exit(0), 5000);
  force.unref();
  try {
    await server.stop();
  } catch (err) {
    process.stderr.write(`congodb/server.mjs: error while stopping: ${err?.stack || err}\n`);
  }
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('unhandledRejection', (err) => {
  process.stderr.write(`congodb/server.mjs: unhandled rejection: ${err?.stack || err}\n`);
});

try {
  await server.start();
} catch (err) {
  fail(`cannot listen on ${host}:${port}: ${err?.message || err}`);
}

// CongoServer keeps its net.Server in a private field; read the real port
// from it (needed when port 0 asked the OS for a free one).
const actualPort = server.server?.address?.()?.port ?? port;
process.stdout.write(`READY ${actualPort}\n`);
process.stderr.write(`congodb/server.mjs: listening on ${host}:${actualPort} (CongoDB from ${dir})\n`);

if (args.exitOnStdinEof) {
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}
