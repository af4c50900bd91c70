// Interop test: Fabric's own CA client, npm `fabric-ca-client` 2.2.20,
// against `twill-ca`. Starts the server itself (binary from TWILL_CA_BIN, or
// ../../target/debug/twill-ca) on a free port with a temporary home, then:
// enroll the bootstrap admin, register a user with attributes, enroll it,
// check the certificate (v3, CN, NodeOU, attribute extension as raw JSON)
// with node:crypto, reenroll, revoke, generate a CRL, and use the identity
// and affiliation services.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import FabricCAServices from 'fabric-ca-client';
import { User } from 'fabric-common';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.TWILL_CA_BIN ?? path.resolve(HERE, '../../target/debug/twill-ca');
const CA_NAME = 'ca-org1';
const ATTR_OID = '1.2.3.4.5.6.7.8.1';

let server;
let home;
let url;

/** Starts twill-ca and resolves with its URL from the "listening on" line. */
function startServer() {
  if (!fs.existsSync(BIN)) {
    throw new Error(`twill-ca binary not found at ${BIN}: run \`cargo build -p twill-ca\` or set TWILL_CA_BIN`);
  }
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'twill-ca-interop-'));
  server = spawn(BIN, ['--home', home, '--port', '0', '--ca-name', CA_NAME, '-b', 'admin:adminpw'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('exit', (code) => reject(new Error(`twill-ca exited with ${code} before listening`)));
    readline.createInterface({ input: server.stdout }).once('line', (line) => {
      const m = /^listening on (https?:\/\/\S+)$/.exec(line.trim());
      if (m) resolve(m[1]);
      else reject(new Error(`unexpected first line from twill-ca: ${line}`));
    });
  });
}

/**
 * The attribute JSON of a certificate: node:crypto does not decode private
 * extensions, so find the OID's DER bytes in the certificate and read the
 * OCTET STRING after it.
 */
function attrsOf(pem) {
  const der = new X509Certificate(pem).raw;
  // 1.2.3.4.5.6.7.8.1 encoded: 06 08 2a 03 04 05 06 07 08 01
  const oid = Buffer.from([0x06, 0x08, 0x2a, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x01]);
  const at = der.indexOf(oid);
  if (at < 0) return null;
  let i = at + oid.length;
  if (der[i] === 0x01) i += 3; // critical BOOLEAN
  assert.equal(der[i], 0x04, 'extnValue is an OCTET STRING');
  let len = der[i + 1];
  let start = i + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let k = 0; k < n; k++) len = (len << 8) | der[start + k];
    start += n;
  }
  const value = der.subarray(start, start + len).toString('utf8');
  return JSON.parse(value); // raw JSON, not a DER string
}

/** The OUs of a certificate subject, in order. */
function ousOf(pem) {
  return new X509Certificate(pem).subject
    .split('\n')
    .filter((l) => l.startsWith('OU='))
    .map((l) => l.slice(3));
}

function userFrom(id, enrollment) {
  return User.createUser(id, '', 'Org1MSP', enrollment.certificate, enrollment.key.toBytes());
}

describe('fabric-ca-client 2.2.20 against twill-ca', { timeout: 60_000 }, () => {
  let ca;
  let admin;
  let user;
  let userSecret;

  before(async () => {
    url = await startServer();
    ca = new FabricCAServices(url, { verify: false }, CA_NAME);
  });

  after(() => {
    if (server && server.exitCode === null) server.kill('SIGTERM');
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  it('enrolls the bootstrap admin (Basic auth) and reads cainfo', async () => {
    const e = await ca.enroll({ enrollmentID: 'admin', enrollmentSecret: 'adminpw' });
    const cert = new X509Certificate(e.certificate);
    assert.match(cert.subject, /CN=admin/);
    assert.ok(cert.checkIssued(new X509Certificate(e.rootCertificate)), 'issued by the CA root');
    admin = userFrom('admin', e);
    const info = await ca.getCaInfo(admin);
    assert.equal(info.caName, CA_NAME);
    assert.match(info.caChain.toString(), /BEGIN CERTIFICATE/);
  });

  it('refuses a wrong secret with Fabric code 20', async () => {
    await assert.rejects(ca.enroll({ enrollmentID: 'admin', enrollmentSecret: 'nope' }), (err) => {
      assert.match(String(err), /Authentication failure/);
      assert.match(String(err), /code.{0,3}20/);
      return true;
    });
  });

  it('registers a user with attributes and enrolls it', async () => {
    userSecret = await ca.register(
      {
        enrollmentID: 'user1',
        affiliation: 'org1.department1',
        role: 'client',
        maxEnrollments: -1,
        attrs: [
          { name: 'app.role', value: 'auditor', ecert: true },
          { name: 'app.hidden', value: 'x' },
        ],
      },
      admin,
    );
    assert.equal(typeof userSecret, 'string');
    const e = await ca.enroll({ enrollmentID: 'user1', enrollmentSecret: userSecret });
    const cert = new X509Certificate(e.certificate);
    assert.match(cert.subject, /CN=user1/);
    assert.deepEqual(ousOf(e.certificate), ['client', 'org1', 'department1']);
    assert.deepEqual(attrsOf(e.certificate), {
      attrs: {
        'app.role': 'auditor',
        'hf.Affiliation': 'org1.department1',
        'hf.EnrollmentID': 'user1',
        'hf.Type': 'client',
      },
    });
    user = userFrom('user1', e);

    const only = await ca.enroll({
      enrollmentID: 'user1',
      enrollmentSecret: userSecret,
      attr_reqs: [{ name: 'app.hidden' }, { name: 'missing', optional: true }],
    });
    assert.deepEqual(attrsOf(only.certificate), { attrs: { 'app.hidden': 'x' } });
  });

  it('refuses a duplicate registration', async () => {
    await assert.rejects(
      ca.register({ enrollmentID: 'user1', affiliation: 'org1.department1', role: 'client' }, admin),
      /already registered/,
    );
  });

  it('reenrolls with token authentication', async () => {
    const e = await ca.reenroll(user);
    assert.match(new X509Certificate(e.certificate).subject, /CN=user1/);
    assert.deepEqual(ousOf(e.certificate), ['client', 'org1', 'department1']);
    user = userFrom('user1', e);
  });

  it('revokes a certificate and lists it in a CRL', async () => {
    const cert = new X509Certificate(user._identity._certificate);
    const serial = cert.serialNumber;
    // AKI = the CA's SKI, which the client does not expose: revoke by enrollment ID.
    const res = await ca.revoke({ enrollmentID: 'user1', reason: 'keycompromise' }, admin);
    assert.equal(res.success, true);
    const revoked = res.result.RevokedCerts.map((c) => c.Serial.toLowerCase());
    assert.ok(revoked.includes(serial.toLowerCase().replace(/^0+/, '')), `${serial} in ${revoked}`);
    const crl = await ca.generateCRL({}, admin);
    const crlPem = Buffer.from(crl, 'base64').toString();
    assert.match(crlPem, /BEGIN X509 CRL/);
    // The revoked identity can no longer act.
    await assert.rejects(ca.reenroll(user), /Authentication failure/);
  });

  it('serves the identity, affiliation and certificate services', async () => {
    const ids = ca.newIdentityService();
    const all = await ids.getAll(admin);
    assert.equal(all.success, true);
    assert.ok(all.result.identities.some((i) => i.id === 'user1'));
    const one = await ids.getOne('admin', admin);
    assert.equal(one.result.id, 'admin');
    const created = await ids.create({ enrollmentID: 'peer0', affiliation: 'org1', type: 'peer', enrollmentSecret: 'peer0pw' }, admin);
    assert.equal(created, 'peer0pw');
    const e = await ca.enroll({ enrollmentID: 'peer0', enrollmentSecret: 'peer0pw' });
    assert.deepEqual(ousOf(e.certificate), ['peer', 'org1']);
    const upd = await ids.update('peer0', { maxEnrollments: 7 }, admin);
    assert.equal(upd.result.max_enrollments, 7);

    const affs = ca.newAffiliationService();
    const created2 = await affs.create({ name: 'org3.dept', force: true }, admin);
    assert.equal(created2.success, true);
    const tree = await affs.getAll(admin);
    assert.deepEqual(
      tree.result.affiliations.map((a) => a.name),
      ['org1', 'org2', 'org3'],
    );
    const del = await affs.delete({ name: 'org3', force: true }, admin);
    assert.equal(del.success, true);

    const certs = await ca.newCertificateService().getCertificates({ id: 'peer0' }, admin);
    assert.equal(certs.result.certs.length, 1);
  });
});
