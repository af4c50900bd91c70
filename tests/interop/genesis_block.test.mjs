// Interop test: a genesis block made by Twill must decode with Hyperledger
// Fabric's OWN protobuf definitions (the generated google-protobuf classes
// shipped in the npm package @hyperledger/fabric-protos), and carry the
// channel configuration that Fabric expects for the test network.
//
// Nothing here uses Twill's own protobuf code: the only decoder is Fabric's.
//
// Run with `npm test` (or ./run.sh) in tests/interop. The twill binary is
// taken from $TWILL_BIN, else ../../target/debug/twill.

import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { common, msp, orderer, peer } from '@hyperledger/fabric-protos';

// etcdraft messages live in a nested namespace of the package:
// lib/orderer/etcdraft/configuration_pb.js, exported as orderer.etcdraft.
const { etcdraft } = orderer;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, '..', '..');
const NETWORK_DIR = path.join(REPO_ROOT, 'network-configs', 'test-network');
const CHANNEL_ID = 'mychannel';
const PROFILE = 'TwoOrgsApplicationGenesis';
const PEM_CERT_HEADER = '-----BEGIN CERTIFICATE-----';

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function locateTwill() {
  const bin = process.env.TWILL_BIN
    ? path.resolve(process.env.TWILL_BIN)
    : path.resolve(REPO_ROOT, 'target', 'debug', 'twill');
  if (!fs.existsSync(bin)) {
    throw new Error(
      `twill binary not found at ${bin}. Build it first with \`cargo build\` ` +
        'in the repository root, or point TWILL_BIN at a twill executable.',
    );
  }
  return bin;
}

function run(bin, args) {
  try {
    return execFileSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const lines = [
      `command failed: ${bin} ${args.join(' ')}`,
      err.status != null ? `exit status: ${err.status}` : `error: ${err.message}`,
    ];
    if (err.stdout) lines.push(`stdout:\n${err.stdout}`);
    if (err.stderr) lines.push(`stderr:\n${err.stderr}`);
    throw new Error(lines.join('\n'));
  }
}

/**
 * Decode `bytes` as the Fabric message class `Type`, and check that Fabric's
 * schema accounts for every byte: google-protobuf drops fields it doesn't
 * know, so re-encoding a message with unknown (or mis-numbered) fields comes
 * out shorter than the input.
 */
function decode(Type, bytes, what) {
  assert.ok(bytes instanceof Uint8Array, `${what}: expected bytes`);
  let msg;
  try {
    msg = Type.deserializeBinary(bytes);
  } catch (err) {
    assert.fail(`${what}: Fabric's protos could not decode it: ${err.message}`);
  }
  const again = msg.serializeBinary();
  assert.equal(
    again.length,
    bytes.length,
    `${what}: ${bytes.length} bytes in, ${again.length} re-encoded by Fabric's protos — ` +
      'some fields are unknown to Fabric or not in canonical encoding',
  );
  return msg;
}

/** Sorted keys of a google-protobuf jspb.Map. */
function mapKeys(m) {
  const keys = [];
  m.forEach((_value, key) => keys.push(key));
  return keys.sort();
}

function subGroup(group, name, where) {
  const g = group.getGroupsMap().get(name);
  assert.ok(g, `${where} has no group '${name}' (groups: ${mapKeys(group.getGroupsMap()).join(', ')})`);
  return g;
}

function configValue(group, key, Type, where) {
  const cv = group.getValuesMap().get(key);
  assert.ok(cv, `${where} has no value '${key}' (values: ${mapKeys(group.getValuesMap()).join(', ')})`);
  return decode(Type, cv.getValue_asU8(), `${where}/${key}`);
}

function utf8(bytes) {
  return Buffer.from(bytes).toString('utf8');
}

function assertPemCert(bytes, what) {
  const pem = utf8(bytes);
  assert.ok(pem.startsWith(PEM_CERT_HEADER), `${what}: not a PEM certificate: ${JSON.stringify(pem.slice(0, 40))}`);
  try {
    new X509Certificate(pem);
  } catch (err) {
    assert.fail(`${what}: PEM does not parse as an X.509 certificate: ${err.message}`);
  }
}

/** Decode an org group's MSP value down to its FabricMSPConfig. */
function fabricMsp(orgGroup, where) {
  const mspConfig = configValue(orgGroup, 'MSP', msp.MSPConfig, where);
  assert.equal(mspConfig.getType(), 0, `${where}/MSP: MSPConfig.type must be 0 (FABRIC)`);
  return decode(msp.FabricMSPConfig, mspConfig.getConfig_asU8(), `${where}/MSP config`);
}

function assertFabricMsp(fmsp, expectedName, where) {
  assert.equal(fmsp.getName(), expectedName, `${where}: FabricMSPConfig.name`);
  const roots = fmsp.getRootCertsList_asU8();
  assert.ok(roots.length >= 1, `${where}: FabricMSPConfig has no root certs`);
  roots.forEach((cert, i) => assertPemCert(cert, `${where}: root_certs[${i}]`));
}

/** ASN.1 DER length octets. */
function derLength(n) {
  if (n < 0x80) return Buffer.from([n]);
  const bytes = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function derTlv(tag, content) {
  return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
}

/** DER INTEGER for a non-negative JS integer (bigint-safe). */
function derUnsignedInteger(value) {
  let v = BigInt(value);
  const bytes = [];
  do {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  } while (v > 0n);
  if (bytes[0] & 0x80) bytes.unshift(0); // keep it positive
  return derTlv(0x02, Buffer.from(bytes));
}

/**
 * Fabric's block header hash (protoutil.BlockHeaderHash): SHA-256 over the
 * ASN.1 DER encoding of SEQUENCE { INTEGER number, OCTET STRING previous_hash,
 * OCTET STRING data_hash }. The next block's previous_hash must equal it.
 */
function blockHeaderAsn1(header) {
  return derTlv(
    0x30,
    Buffer.concat([
      derUnsignedInteger(header.getNumber()),
      derTlv(0x04, Buffer.from(header.getPreviousHash_asU8())),
      derTlv(0x04, Buffer.from(header.getDataHash_asU8())),
    ]),
  );
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

// The block is generated once, on first use. If that fails (no twill binary,
// missing configs, a twill error, an undecodable block), every test below
// fails with the same message rather than being skipped or cancelled.
let tmp;
let genesisResult;

function buildGenesis() {
  const twill = locateTwill();
  for (const f of ['crypto-config.yaml', 'configtx.yaml']) {
    const p = path.join(NETWORK_DIR, f);
    if (!fs.existsSync(p)) throw new Error(`test-network config missing: ${p}`);
  }

  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'twill-interop-'));
  const netDir = path.join(tmp, 'test-network');
  fs.mkdirSync(netDir);
  fs.copyFileSync(path.join(NETWORK_DIR, 'crypto-config.yaml'), path.join(netDir, 'crypto-config.yaml'));
  fs.copyFileSync(path.join(NETWORK_DIR, 'configtx.yaml'), path.join(netDir, 'configtx.yaml'));

  run(twill, [
    'cryptogen', 'generate',
    '--config', path.join(netDir, 'crypto-config.yaml'),
    '--output', path.join(netDir, 'organizations'),
  ]);

  const blockPath = path.join(tmp, `${CHANNEL_ID}.block`);
  run(twill, [
    'configtxgen',
    '--config', path.join(netDir, 'configtx.yaml'),
    '--profile', PROFILE,
    '--channel-id', CHANNEL_ID,
    '--output-block', blockPath,
  ]);
  if (!fs.existsSync(blockPath)) throw new Error(`twill configtxgen exited 0 but wrote no block at ${blockPath}`);

  const blockBytes = new Uint8Array(fs.readFileSync(blockPath));
  const block = decode(common.Block, blockBytes, 'Block');
  assert.ok(block.hasHeader(), 'Block has no header');
  assert.ok(block.hasData(), 'Block has no data');

  const data = block.getData().getDataList_asU8();
  assert.equal(data.length, 1, 'a genesis block carries exactly one envelope');
  const envelope = decode(common.Envelope, data[0], 'Envelope');
  const payload = decode(common.Payload, envelope.getPayload_asU8(), 'Payload');
  assert.ok(payload.hasHeader(), 'Payload has no header');
  const channelHeader = decode(common.ChannelHeader, payload.getHeader().getChannelHeader_asU8(), 'ChannelHeader');
  decode(common.SignatureHeader, payload.getHeader().getSignatureHeader_asU8(), 'SignatureHeader');

  const configEnvelope = decode(common.ConfigEnvelope, payload.getData_asU8(), 'ConfigEnvelope');
  assert.ok(configEnvelope.hasConfig(), 'ConfigEnvelope has no config');
  const config = configEnvelope.getConfig();
  assert.ok(config.hasChannelGroup(), 'Config has no channel_group');

  return { block, channelHeader, channelGroup: config.getChannelGroup() };
}

function genesis() {
  if (!genesisResult) {
    try {
      genesisResult = { value: buildGenesis() };
    } catch (error) {
      genesisResult = { error };
    }
  }
  if (genesisResult.error) throw genesisResult.error;
  return genesisResult.value;
}

describe(`twill genesis block (${PROFILE}, ${CHANNEL_ID}) decodes with @hyperledger/fabric-protos`, () => {
  after(() => {
    if (tmp && !process.env.TWILL_INTEROP_KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
    else if (tmp) console.log(`twill interop: kept temp dir ${tmp}`);
  });

  it('block header: number 0, empty previous_hash, data_hash = SHA-256 of the data entries', () => {
    const { block } = genesis();
    const header = block.getHeader();
    assert.equal(Number(header.getNumber()), 0, 'block number');
    assert.equal(header.getPreviousHash_asU8().length, 0, 'previous_hash must be empty');

    const data = block.getData().getDataList_asU8();
    const expected = createHash('sha256').update(Buffer.concat(data.map((d) => Buffer.from(d)))).digest();
    assert.equal(
      Buffer.from(header.getDataHash_asU8()).toString('hex'),
      expected.toString('hex'),
      'data_hash must be SHA-256 over the concatenated data entries',
    );
  });

  it('block header hash (ASN.1 DER rule) is computable', (t) => {
    const { block } = genesis();
    const header = block.getHeader();
    const der = blockHeaderAsn1(header);
    // number 0, no previous hash, 32-byte data hash:
    // 30 27 | 02 01 00 | 04 00 | 04 20 <data_hash>
    const dataHash = Buffer.from(header.getDataHash_asU8()).toString('hex');
    assert.equal(der.toString('hex'), '3027' + '020100' + '0400' + '0420' + dataHash);
    const hash = createHash('sha256').update(der).digest();
    assert.equal(hash.length, 32);
    t.diagnostic(`genesis block header hash: ${hash.toString('hex')}`);
  });

  it('block metadata has Fabric\'s slots and points last_config at block 0', () => {
    const { block } = genesis();
    const metadata = block.getMetadata();
    assert.ok(metadata, 'Block has no metadata');
    const entries = metadata.getMetadataList_asU8();
    const slots = Object.keys(common.BlockMetadataIndex).length;
    assert.equal(entries.length, slots, `Fabric peers index block metadata by BlockMetadataIndex: want ${slots} entries`);

    const sigs = decode(common.Metadata, entries[common.BlockMetadataIndex.SIGNATURES], 'metadata[SIGNATURES]');
    const obm = decode(common.OrdererBlockMetadata, sigs.getValue_asU8(), 'metadata[SIGNATURES].value');
    assert.ok(obm.hasLastConfig(), 'OrdererBlockMetadata has no last_config');
    assert.equal(Number(obm.getLastConfig().getIndex()), 0, 'OrdererBlockMetadata.last_config.index');

    // The LAST_CONFIG slot is deprecated in Fabric 2.x; if filled it must agree.
    const lastConfigBytes = entries[common.BlockMetadataIndex.LAST_CONFIG];
    if (lastConfigBytes.length > 0) {
      const md = decode(common.Metadata, lastConfigBytes, 'metadata[LAST_CONFIG]');
      const lc = decode(common.LastConfig, md.getValue_asU8(), 'metadata[LAST_CONFIG].value');
      assert.equal(Number(lc.getIndex()), 0, 'LastConfig.index');
    }
  });

  it('envelope is a CONFIG transaction for mychannel', () => {
    const { channelHeader } = genesis();
    assert.equal(common.HeaderType.CONFIG, 1);
    assert.equal(channelHeader.getType(), 1, 'ChannelHeader.type must be 1 (CONFIG)');
    assert.equal(channelHeader.getChannelId(), CHANNEL_ID, 'ChannelHeader.channel_id');
  });

  it('channel-level values: HashingAlgorithm, BlockDataHashingStructure', () => {
    const { channelGroup } = genesis();
    const hashing = configValue(channelGroup, 'HashingAlgorithm', common.HashingAlgorithm, 'Channel');
    assert.equal(hashing.getName(), 'SHA256');

    const bdhs = configValue(channelGroup, 'BlockDataHashingStructure', common.BlockDataHashingStructure, 'Channel');
    assert.equal(bdhs.getWidth(), 4294967295, 'BlockDataHashingStructure.width must be MaxUint32');
  });

  it('orderer addresses: channel-level OrdererAddresses and/or orderer-org Endpoints', (t) => {
    // Fabric has two places for these, both holding a common.OrdererAddresses:
    // the legacy channel-level value 'OrdererAddresses' (written by
    // configtxgen only when the profile's Orderer.Addresses is set) and, since
    // Fabric 1.4.2, an 'Endpoints' value in each orderer org (from the org's
    // OrdererEndpoints). Whichever is present must decode and hold host:port
    // entries, and at least one must be present, or clients can't find an
    // orderer.
    const { channelGroup } = genesis();
    const found = [];
    if (channelGroup.getValuesMap().has('OrdererAddresses')) {
      const addrs = configValue(channelGroup, 'OrdererAddresses', common.OrdererAddresses, 'Channel');
      found.push(['Channel/OrdererAddresses', addrs.getAddressesList()]);
    }
    const ord = subGroup(channelGroup, 'Orderer', 'Channel');
    for (const org of mapKeys(ord.getGroupsMap())) {
      const orgGroup = ord.getGroupsMap().get(org);
      if (orgGroup.getValuesMap().has('Endpoints')) {
        const where = `Channel/Orderer/${org}`;
        found.push([`${where}/Endpoints`, configValue(orgGroup, 'Endpoints', common.OrdererAddresses, where).getAddressesList()]);
      }
    }
    assert.ok(found.length > 0, "no orderer addresses: neither Channel/OrdererAddresses nor any orderer org's Endpoints");
    for (const [where, list] of found) {
      assert.ok(list.length >= 1, `${where} is empty`);
      for (const a of list) assert.match(a, /^[^\s:]+:\d+$/, `${where}: '${a}' is not host:port`);
      t.diagnostic(`${where}: ${list.join(', ')}`);
    }
  });

  it('Application group: exactly Org1MSP and Org2MSP, each with a Fabric MSP and one anchor peer', () => {
    const { channelGroup } = genesis();
    const app = subGroup(channelGroup, 'Application', 'Channel');
    assert.deepEqual(mapKeys(app.getGroupsMap()), ['Org1MSP', 'Org2MSP'], 'Application org groups');

    for (const org of ['Org1MSP', 'Org2MSP']) {
      const where = `Channel/Application/${org}`;
      const orgGroup = subGroup(app, org, 'Channel/Application');
      assertFabricMsp(fabricMsp(orgGroup, where), org, where);

      const anchors = configValue(orgGroup, 'AnchorPeers', peer.AnchorPeers, where).getAnchorPeersList();
      assert.equal(anchors.length, 1, `${where}: expected one anchor peer`);
      assert.ok(anchors[0].getHost().length > 0, `${where}: anchor peer host is empty`);
      assert.ok(anchors[0].getPort() > 0, `${where}: anchor peer port must be > 0`);
    }
  });

  it('Application policy Endorsement is IMPLICIT_META MAJORITY Endorsement', () => {
    const { channelGroup } = genesis();
    const app = subGroup(channelGroup, 'Application', 'Channel');
    const cp = app.getPoliciesMap().get('Endorsement');
    assert.ok(cp, `Application has no 'Endorsement' policy (policies: ${mapKeys(app.getPoliciesMap()).join(', ')})`);
    assert.ok(cp.hasPolicy(), 'Endorsement ConfigPolicy has no policy');
    const policy = cp.getPolicy();
    assert.equal(common.Policy.PolicyType.IMPLICIT_META, 3);
    assert.equal(policy.getType(), 3, 'Endorsement policy type must be 3 (IMPLICIT_META)');

    const imp = decode(common.ImplicitMetaPolicy, policy.getValue_asU8(), 'Application/Endorsement');
    assert.equal(common.ImplicitMetaPolicy.Rule.MAJORITY, 2);
    assert.equal(imp.getRule(), 2, 'ImplicitMetaPolicy.rule must be 2 (MAJORITY)');
    assert.equal(imp.getSubPolicy(), 'Endorsement', 'ImplicitMetaPolicy.sub_policy');
  });

  it('Orderer group: OrdererMSP org with a Fabric MSP', () => {
    const { channelGroup } = genesis();
    const ord = subGroup(channelGroup, 'Orderer', 'Channel');
    // The group key is the org's Name in configtx.yaml (which need not be its
    // MSP ID), so look the org up by the MSP name inside it.
    const found = mapKeys(ord.getGroupsMap())
      .map((key) => ({ key, fmsp: fabricMsp(ord.getGroupsMap().get(key), `Channel/Orderer/${key}`) }))
      .filter(({ fmsp }) => fmsp.getName() === 'OrdererMSP');
    assert.equal(found.length, 1, `expected one Orderer org whose MSP is OrdererMSP (orgs: ${mapKeys(ord.getGroupsMap()).join(', ')})`);
    assertFabricMsp(found[0].fmsp, 'OrdererMSP', `Channel/Orderer/${found[0].key}`);
  });

  it('Orderer consensus: etcdraft with 3 consenters on 127.0.0.1, distinct ports, TLS certs', () => {
    const { channelGroup } = genesis();
    const ord = subGroup(channelGroup, 'Orderer', 'Channel');
    const ct = configValue(ord, 'ConsensusType', orderer.ConsensusType, 'Channel/Orderer');
    assert.equal(ct.getType(), 'etcdraft', 'ConsensusType.type');

    const meta = decode(etcdraft.ConfigMetadata, ct.getMetadata_asU8(), 'ConsensusType.metadata (etcdraft.ConfigMetadata)');
    const consenters = meta.getConsentersList();
    assert.equal(consenters.length, 3, 'number of etcdraft consenters');
    const ports = new Set();
    consenters.forEach((c, i) => {
      const where = `consenter[${i}]`;
      assert.equal(c.getHost(), '127.0.0.1', `${where}.host`);
      assert.ok(c.getPort() > 0, `${where}.port must be > 0`);
      ports.add(c.getPort());
      assert.ok(c.getClientTlsCert_asU8().length > 0, `${where}.client_tls_cert is empty`);
      assert.ok(c.getServerTlsCert_asU8().length > 0, `${where}.server_tls_cert is empty`);
      assertPemCert(c.getClientTlsCert_asU8(), `${where}.client_tls_cert`);
      assertPemCert(c.getServerTlsCert_asU8(), `${where}.server_tls_cert`);
    });
    assert.equal(ports.size, 3, `consenter ports must be distinct: ${consenters.map((c) => c.getPort()).join(', ')}`);
  });

  it('Orderer batching: BatchSize and BatchTimeout', () => {
    const { channelGroup } = genesis();
    const ord = subGroup(channelGroup, 'Orderer', 'Channel');
    const bs = configValue(ord, 'BatchSize', orderer.BatchSize, 'Channel/Orderer');
    assert.ok(bs.getMaxMessageCount() > 0, 'BatchSize.max_message_count must be > 0');
    // Fabric's channelconfig also rejects these:
    assert.ok(bs.getAbsoluteMaxBytes() > 0, 'BatchSize.absolute_max_bytes must be > 0');
    assert.ok(
      bs.getPreferredMaxBytes() <= bs.getAbsoluteMaxBytes(),
      'BatchSize.preferred_max_bytes must not exceed absolute_max_bytes',
    );

    const bt = configValue(ord, 'BatchTimeout', orderer.BatchTimeout, 'Channel/Orderer');
    assert.ok(bt.getTimeout().length > 0, 'BatchTimeout.timeout is empty');
    // Fabric parses it with Go's time.ParseDuration.
    assert.match(bt.getTimeout(), /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/, 'BatchTimeout.timeout is not a Go duration');
  });
});
