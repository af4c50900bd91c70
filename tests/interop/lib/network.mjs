// Shared helpers of the gateway tests: the running network (from the state
// folder `twill network up --state-dir` wrote, named by TWILL_INTEROP_NETWORK),
// gRPC clients and Gateway connections made the way an application built on
// Fabric's test-network would make them: from the org's connection profile and
// the User1 MSP folder.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import * as grpc from '@grpc/grpc-js';
import { connect, hash, signers } from '@hyperledger/fabric-gateway';

export const CHANNEL = 'mychannel';
/** The Rust asset-transfer chaincode, deployed by `twill network up`. */
export const RUST_CC = 'basic';
/** The Node asset-transfer chaincode (fabric-contract-api), deployed by run.sh. */
export const NODE_CC = process.env.TWILL_INTEROP_NODE_CC || 'basic-node';

/** Deadlines of the Gateway calls: generous, a debug build on a small machine is slow. */
const DEADLINES_MS = { evaluate: 30_000, endorse: 60_000, submit: 30_000, commitStatus: 60_000 };

/** The state folder of the running network. */
export function networkDir() {
  const dir = process.env.TWILL_INTEROP_NETWORK;
  if (!dir) {
    throw new Error(
      'TWILL_INTEROP_NETWORK is not set: these tests need a running network. Run tests/interop/run.sh, ' +
        'or start one with `twill network up --state-dir <dir>` (and deploy basic-node as run.sh does) ' +
        'and set TWILL_INTEROP_NETWORK=<dir>.',
    );
  }
  if (!fs.existsSync(path.join(dir, 'network.json'))) {
    throw new Error(`${dir} holds no network.json: is the network up?`);
  }
  return path.resolve(dir);
}

function onlyFile(dir) {
  const files = fs.readdirSync(dir).filter((f) => !f.startsWith('.'));
  assert.equal(files.length, 1, `expected one file in ${dir}, found ${files.join(', ')}`);
  return path.join(dir, files[0]);
}

/**
 * What an application of org `n` (1 or 2) needs: its MSP id, its first
 * peer (endpoint, TLS CA, host name override, from connection-org<n>.json)
 * and User1's certificate and private key.
 */
export function orgInfo(n, dir = networkDir()) {
  const orgDir = path.join(dir, 'organizations', 'peerOrganizations', `org${n}.example.com`);
  const profileFile = path.join(orgDir, `connection-org${n}.json`);
  const profile = JSON.parse(fs.readFileSync(profileFile, 'utf8'));
  const org = profile.organizations?.[`Org${n}`];
  assert.ok(org, `${profileFile}: no organization Org${n}`);
  const peerName = org.peers?.[0];
  assert.ok(peerName, `${profileFile}: Org${n} lists no peer`);
  const peer = profile.peers?.[peerName];
  assert.ok(peer, `${profileFile}: no peer ${peerName}`);
  const url = new URL(peer.url);
  assert.equal(url.protocol, 'grpcs:', `${profileFile}: ${peerName} url ${peer.url} is not grpcs://`);
  // The same CA the peer's own tls/ca.crt holds.
  const tlsCaFile = path.join(orgDir, 'peers', peerName, 'tls', 'ca.crt');
  const tlsCa = peer.tlsCACerts?.pem ?? fs.readFileSync(tlsCaFile, 'utf8');
  const msp = path.join(orgDir, 'users', `User1@org${n}.example.com`, 'msp');
  return {
    mspId: org.mspid,
    peerName,
    endpoint: url.host,
    tlsCa: Buffer.from(tlsCa),
    tlsCaFile,
    hostOverride: peer.grpcOptions?.['ssl-target-name-override'] ?? peerName,
    certificate: fs.readFileSync(onlyFile(path.join(msp, 'signcerts'))),
    privateKey: crypto.createPrivateKey(fs.readFileSync(onlyFile(path.join(msp, 'keystore')))),
  };
}

/** A gRPC client for `org`'s peer: server TLS with the org's TLS CA. */
export function newGrpcClient(org) {
  return new grpc.Client(org.endpoint, grpc.credentials.createSsl(org.tlsCa), {
    'grpc.ssl_target_name_override': org.hostOverride,
  });
}

function deadline(ms) {
  return () => ({ deadline: Date.now() + ms });
}

/**
 * A Gateway connection as org `n`'s User1. With `{ signer: false }` the
 * gateway has no signer (offline signing). Close it with `.close()`, which
 * closes the gRPC client too.
 */
export function connectGateway(n = 1, { signer = true } = {}) {
  const org = orgInfo(n);
  const client = newGrpcClient(org);
  const options = {
    client,
    identity: { mspId: org.mspId, credentials: org.certificate },
    hash: hash.sha256,
    evaluateOptions: deadline(DEADLINES_MS.evaluate),
    endorseOptions: deadline(DEADLINES_MS.endorse),
    submitOptions: deadline(DEADLINES_MS.submit),
    commitStatusOptions: deadline(DEADLINES_MS.commitStatus),
  };
  if (signer) options.signer = signers.newPrivateKeySigner(org.privateKey);
  const gateway = connect(options);
  return {
    org,
    client,
    gateway,
    network: gateway.getNetwork(CHANNEL),
    close() {
      gateway.close();
      client.close();
    },
  };
}

let counter = 0;
/** An asset id no other test (nor an earlier run on the same network) uses. */
export function uniqueId(prefix) {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

export const utf8 = new TextDecoder();

/** The JSON asset-transfer writes for an asset (keys sorted, no spaces). */
export function assetJson(id, color, size, owner, value) {
  return JSON.stringify({ AppraisedValue: value, Color: color, ID: id, Owner: owner, Size: size });
}

/**
 * Reads `events` until `count` items satisfying `wanted` arrived, or fails
 * after `timeoutMs`. Closes the stream in any case.
 */
export async function take(events, count, { wanted = () => true, timeoutMs = 60_000, what = 'events' } = {}) {
  const got = [];
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    events.close();
  }, timeoutMs);
  try {
    for await (const item of events) {
      if (wanted(item)) {
        got.push(item);
        if (got.length >= count) break;
      }
    }
  } catch (err) {
    if (!timedOut) throw err;
  } finally {
    clearTimeout(timer);
    events.close();
  }
  assert.equal(got.length, count, `${what}: ${got.length} of ${count} arrived within ${timeoutMs / 1000} s`);
  return got;
}

/** Retries `fn` until it resolves (or `timeoutMs` passed: its last error). */
export async function eventually(fn, { timeoutMs = 15_000, intervalMs = 200 } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}

/** gRPC status code names, for messages. */
export function codeName(code) {
  return Object.entries(grpc.status).find(([, v]) => v === code)?.[0] ?? String(code);
}
