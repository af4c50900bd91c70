// Runs the Caliper 0.6.0 benchmark (benchmarks/config.yaml) against a running
// Twill network with Caliper's Fabric peer-gateway connector, and fails unless
// every transaction of every round succeeded.
//
// TWILL_INTEROP_NETWORK names the network's state folder (`twill network up
// --state-dir`); the Caliper network configuration (format 2.0.0) is written
// from it: Org1's User1 certificate and key, Org1's connection profile (peer
// endpoint and TLS CA), channel mychannel, contract basic. The report and the
// generated files go to <state>/caliper/.
//
// Run by ../run.sh; alone: `TWILL_INTEROP_NETWORK=<state dir> node run.mjs`.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
/** Caliper may take this long in all (start-up, two rounds, shut-down). */
const TIMEOUT_MS = Number(process.env.TWILL_CALIPER_TIMEOUT_MS || 170_000);
const ROUNDS = { 'create-asset': { txNumber: 300 }, 'read-asset': {} };

function fail(message) {
  console.error(`caliper/run.mjs: ${message}`);
  process.exit(1);
}

function stateDir() {
  const dir = process.env.TWILL_INTEROP_NETWORK;
  if (!dir) {
    fail('TWILL_INTEROP_NETWORK is not set: it must name the state folder of a running ' +
      '`twill network up --state-dir <dir>` (../run.sh sets it)');
  }
  if (!fs.existsSync(path.join(dir, 'network.json'))) {
    fail(`${dir} holds no network.json: is the network up?`);
  }
  return path.resolve(dir);
}

function onlyFile(dir) {
  const files = fs.readdirSync(dir).filter((f) => !f.startsWith('.'));
  if (files.length !== 1) fail(`expected one file in ${dir}, found ${files.length}`);
  return path.join(dir, files[0]);
}

/** The Caliper network configuration (format 2.0.0) for Org1's User1. */
function networkConfig(state) {
  const org = path.join(state, 'organizations', 'peerOrganizations', 'org1.example.com');
  const msp = path.join(org, 'users', 'User1@org1.example.com', 'msp');
  return {
    name: 'twill-test-network',
    version: '2.0.0',
    caliper: { blockchain: 'fabric', sutOptions: { mutualTls: false } },
    channels: [{ channelName: 'mychannel', contracts: [{ id: 'basic' }] }],
    organizations: [
      {
        mspid: 'Org1MSP',
        identities: {
          certificates: [
            {
              name: 'User1',
              clientPrivateKey: { path: onlyFile(path.join(msp, 'keystore')) },
              clientSignedCert: { path: onlyFile(path.join(msp, 'signcerts')) },
            },
          ],
        },
        connectionProfile: { path: path.join(org, 'connection-org1.yaml'), discover: false },
      },
    ],
  };
}

const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * The rows of Caliper's result tables, by round label (the last table printed
 * wins: Caliper prints one per round, then all of them again at the end).
 */
function parseResults(output) {
  const rows = {};
  let header = null;
  for (const raw of output.replace(ANSI, '').split('\n')) {
    const line = raw.trim();
    if (!line.startsWith('|')) continue;
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    if (cells[0] === 'Name') {
      header = cells;
    } else if (header && cells.length === header.length && cells[0] in ROUNDS) {
      rows[cells[0]] = Object.fromEntries(header.map((h, i) => [h, cells[i]]));
    }
  }
  return rows;
}

async function main() {
  const state = stateDir();
  const work = path.join(state, 'caliper');
  fs.mkdirSync(work, { recursive: true });
  const networkFile = path.join(work, 'network.yaml'); // JSON is YAML
  fs.writeFileSync(networkFile, JSON.stringify(networkConfig(state), null, 2) + '\n');
  const report = path.join(work, 'report.html');
  const cli = require.resolve('@hyperledger/caliper-cli/caliper.js');
  const args = [
    cli, 'launch', 'manager',
    '--caliper-workspace', HERE,
    '--caliper-networkconfig', networkFile,
    '--caliper-benchconfig', path.join(HERE, 'benchmarks', 'config.yaml'),
    '--caliper-report-path', report,
    '--caliper-flow-only-test',
  ];
  const runId = `${Date.now().toString(36)}${process.pid}`;
  console.log(`caliper: node ${args.map((a) => path.relative(HERE, a) || a).join(' ')}`);
  console.log(`caliper: network configuration ${networkFile}, run id ${runId}`);

  const started = Date.now();
  const loadBefore = os.loadavg()[0];
  const child = spawn(process.execPath, args, {
    cwd: HERE,
    env: { ...process.env, TWILL_CALIPER_RUN_ID: runId },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so that a timeout stops its workers too.
    detached: true,
  });
  let output = '';
  for (const stream of [child.stdout, child.stderr]) {
    stream.on('data', (chunk) => {
      output += chunk;
      process.stdout.write(chunk);
    });
  }
  const timer = setTimeout(() => {
    console.error(`caliper: no result after ${TIMEOUT_MS / 1000} s, stopping it`);
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  }, TIMEOUT_MS);
  const code = await new Promise((resolve) => child.on('close', (c, sig) => resolve(c ?? sig)));
  clearTimeout(timer);
  const seconds = (Date.now() - started) / 1000;

  const problems = [];
  if (code !== 0) problems.push(`caliper exited with ${code}`);
  const plain = output.replace(ANSI, '');
  if (!/Initializing peer gateway connector compatible with installed fabric-gateway SDK: 1\.5\.0/.test(plain)) {
    problems.push('Caliper did not say it uses the peer-gateway connector with fabric-gateway 1.5.0');
  }
  const rows = parseResults(output);
  for (const [label, want] of Object.entries(ROUNDS)) {
    const row = rows[label];
    if (!row) {
      problems.push(`no result row for round ${label}`);
      continue;
    }
    const succ = Number(row.Succ);
    const failed = Number(row.Fail);
    if (failed !== 0) problems.push(`round ${label}: ${row.Fail} failed transaction(s)`);
    if (!(succ > 0)) problems.push(`round ${label}: no successful transaction`);
    if (want.txNumber && succ !== want.txNumber) {
      problems.push(`round ${label}: ${succ} successful transactions, expected ${want.txNumber}`);
    }
  }

  const summary = {
    caliper: '0.6.0',
    connector: 'peer-gateway (@hyperledger/fabric-gateway 1.5.0, @grpc/grpc-js 1.10.3)',
    node: process.version,
    machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    seconds,
    // 1-minute load average before and after: other work on the machine skews the figures.
    loadAverage: [loadBefore, os.loadavg()[0]].map((l) => Number(l.toFixed(2))),
    rounds: rows,
  };
  fs.writeFileSync(path.join(work, 'results.json'), JSON.stringify(summary, null, 2) + '\n');
  if (process.env.TWILL_CALIPER_RESULTS) {
    fs.writeFileSync(process.env.TWILL_CALIPER_RESULTS, JSON.stringify(summary, null, 2) + '\n');
  }

  console.log(
    `\ncaliper summary (${seconds.toFixed(1)} s, ${summary.machine}, load ${summary.loadAverage.join(' → ')}, ` +
      `Node ${process.version}):`,
  );
  console.log('  round         succ  fail  send TPS  max lat (s)  min lat (s)  avg lat (s)  throughput TPS');
  for (const [label, r] of Object.entries(rows)) {
    console.log(`  ${label.padEnd(12)} ${r.Succ.padStart(5)} ${r.Fail.padStart(5)} ${r['Send Rate (TPS)'].padStart(9)}` +
      ` ${r['Max Latency (s)'].padStart(12)} ${r['Min Latency (s)'].padStart(12)} ${r['Avg Latency (s)'].padStart(12)}` +
      ` ${r['Throughput (TPS)'].padStart(15)}`);
  }
  if (problems.length) {
    fail(`benchmark failed:\n  - ${problems.join('\n  - ')}\n(report: ${report})`);
  }
  console.log(`caliper: all transactions succeeded (report: ${report})`);
}

main().catch((err) => fail(err.stack || String(err)));
