// Fabric wire helpers for the gateway tests, on Fabric's own generated
// protobuf classes (@hyperledger/fabric-protos) and Node's crypto: strict
// decoding, block header hashes, ECDSA signatures as Fabric wants them.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { common, msp, peer } from '@hyperledger/fabric-protos';

/**
 * Decodes `bytes` as the Fabric message class `Type` and checks that Fabric's
 * schema accounts for every byte (google-protobuf drops unknown fields, so a
 * re-encoding that comes out shorter means fields Fabric does not have).
 */
export function decode(Type, bytes, what) {
  assert.ok(bytes instanceof Uint8Array, `${what}: expected bytes`);
  let msg;
  try {
    msg = Type.deserializeBinary(bytes);
  } catch (err) {
    assert.fail(`${what}: Fabric's protos could not decode it: ${err.message}`);
  }
  assert.equal(
    msg.serializeBinary().length,
    bytes.length,
    `${what}: fields unknown to Fabric's schema, or not in canonical encoding`,
  );
  return msg;
}

export function sha256(...parts) {
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

function derLength(n) {
  if (n < 0x80) return Buffer.from([n]);
  const bytes = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function derTlv(tag, content) {
  return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
}

/** DER INTEGER of a non-negative integer (number or bigint). */
function derUnsignedInteger(value) {
  let v = BigInt(value);
  const bytes = [];
  do {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  } while (v > 0n);
  if (bytes[0] & 0x80) bytes.unshift(0);
  return derTlv(0x02, Buffer.from(bytes));
}

/**
 * Fabric's block header hash: SHA-256 of the DER encoding of SEQUENCE
 * { INTEGER number, OCTET STRING previous_hash, OCTET STRING data_hash }.
 */
export function blockHeaderHash(header) {
  return sha256(
    derTlv(
      0x30,
      Buffer.concat([
        derUnsignedInteger(header.getNumber()),
        derTlv(0x04, Buffer.from(header.getPreviousHash_asU8())),
        derTlv(0x04, Buffer.from(header.getDataHash_asU8())),
      ]),
    ),
  );
}

/** Order of the P-256 group. */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

function bytesToBigInt(bytes) {
  return BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`);
}

/**
 * ECDSA P-256 signature of SHA-256(`message`) with Node's crypto, in the form
 * Fabric requires: ASN.1 DER, S in the lower half of the group order (Fabric
 * rejects high-S signatures; OpenSSL does not normalise them).
 */
export function signLowS(message, privateKey) {
  const raw = crypto.sign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' });
  assert.equal(raw.length, 64, 'expected a P-256 key');
  const r = bytesToBigInt(raw.subarray(0, 32));
  let s = bytesToBigInt(raw.subarray(32));
  if (s > P256_N / 2n) s = P256_N - s;
  return derTlv(0x30, Buffer.concat([derUnsignedInteger(r), derUnsignedInteger(s)]));
}

/** The channel header of an Envelope's payload, with the payload. */
export function envelopeHeaders(envelopeBytes, what) {
  const env = decode(common.Envelope, envelopeBytes, `${what}: Envelope`);
  const payload = decode(common.Payload, env.getPayload_asU8(), `${what}: Payload`);
  const channelHeader = decode(
    common.ChannelHeader,
    payload.getHeader().getChannelHeader_asU8(),
    `${what}: ChannelHeader`,
  );
  return { env, payload, channelHeader };
}

/**
 * Digs an endorser transaction's payload down to what the tests look at:
 * the endorsers' MSP ids, the chaincode action (id, event, response).
 */
export function endorserTransaction(payload, what) {
  const tx = decode(peer.Transaction, payload.getData_asU8(), `${what}: Transaction`);
  assert.equal(tx.getActionsList().length, 1, `${what}: one action`);
  const cap = decode(
    peer.ChaincodeActionPayload,
    tx.getActionsList()[0].getPayload_asU8(),
    `${what}: ChaincodeActionPayload`,
  );
  const endorsed = cap.getAction();
  const prp = decode(
    peer.ProposalResponsePayload,
    endorsed.getProposalResponsePayload_asU8(),
    `${what}: ProposalResponsePayload`,
  );
  const action = decode(peer.ChaincodeAction, prp.getExtension_asU8(), `${what}: ChaincodeAction`);
  const endorsers = endorsed.getEndorsementsList().map((e, i) => {
    const id = decode(msp.SerializedIdentity, e.getEndorser_asU8(), `${what}: endorsement ${i} endorser`);
    return id.getMspid();
  });
  const event = action.getEvents_asU8().length
    ? decode(peer.ChaincodeEvent, action.getEvents_asU8(), `${what}: ChaincodeEvent`)
    : null;
  return { action, endorsers, event, response: action.getResponse() };
}
