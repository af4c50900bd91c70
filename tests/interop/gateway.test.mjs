// Interop test: Fabric's own Gateway client, @hyperledger/fabric-gateway
// 1.11 on @grpc/grpc-js, against a running Twill network (run.sh starts it and
// sets TWILL_INTEROP_NETWORK). Connects to Org1's peer with server TLS, as
// Org1's User1: submit, evaluate, commit status, error details, bad input,
// offline signing, and the Node chaincode deployed as `basic-node`.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import * as grpc from '@grpc/grpc-js';
import {
  CommitStatusError,
  EndorseError,
  GatewayError,
  StatusCode,
  connect,
  signers,
} from '@hyperledger/fabric-gateway';
import { gateway as gatewayProto, msp } from '@hyperledger/fabric-protos';

import {
  CHANNEL,
  NODE_CC,
  RUST_CC,
  assetJson,
  codeName,
  connectGateway,
  eventually,
  newGrpcClient,
  orgInfo,
  uniqueId,
  utf8,
} from './lib/network.mjs';
import { decode, endorserTransaction, envelopeHeaders, sha256, signLowS } from './lib/fabric.mjs';

const TX_ID = /^[0-9a-f]{64}$/;
const TEST_TIMEOUT = 120_000;

/** Everything the server said about an error: message and details. */
function errorText(err) {
  return [err.message, ...(err.details ?? []).map((d) => `${d.address} ${d.mspId} ${d.message}`)].join('\n');
}

/** Asserts `err` is a GatewayError with one of `codes`; returns it for more checks. */
function assertGatewayError(err, codes, what) {
  assert.ok(err instanceof GatewayError, `${what}: expected a GatewayError, got ${err?.constructor?.name}: ${err}`);
  assert.ok(
    codes.includes(err.code),
    `${what}: gRPC status ${codeName(err.code)}, expected ${codes.map(codeName).join(' or ')}\n${errorText(err)}`,
  );
  return err;
}

/**
 * Asserts every ErrorDetail names a node (address and MSP id) and says
 * something, and that one comes from Org1's peer (the gateway peer, which
 * endorses first).
 */
function assertDetails(err, what, { mentions } = {}) {
  assert.ok(err.details.length >= 1, `${what}: no ErrorDetail in grpc-status-details-bin\n${errorText(err)}`);
  for (const d of err.details) {
    assert.ok(d.address, `${what}: ErrorDetail without address: ${JSON.stringify(d)}`);
    assert.match(d.mspId, /^Org[12]MSP$/, `${what}: ErrorDetail msp_id: ${JSON.stringify(d)}`);
    assert.ok(d.message, `${what}: ErrorDetail without message: ${JSON.stringify(d)}`);
  }
  const org1 = orgInfo(1);
  assert.ok(
    err.details.some((d) => d.address === org1.endpoint && d.mspId === org1.mspId),
    `${what}: no ErrorDetail from Org1's peer ${org1.endpoint}\n${errorText(err)}`,
  );
  if (mentions) {
    assert.ok(
      err.details.some((d) => d.message.includes(mentions)),
      `${what}: no ErrorDetail message mentions ${JSON.stringify(mentions)}\n${errorText(err)}`,
    );
  }
}

describe('Fabric Gateway client (fabric-gateway 1.11) against Org1 peer', { timeout: TEST_TIMEOUT * 10 }, () => {
  let conn;
  let contract;

  before(() => {
    conn = connectGateway(1);
    contract = conn.network.getContract(RUST_CC);
  });
  after(() => conn?.close());

  describe('connection', () => {
    it('the connection profile names the peer (grpcs URL) and its TLS CA, the one in the peer\'s tls/ca.crt', () => {
      for (const n of [1, 2]) {
        const org = orgInfo(n);
        assert.equal(org.mspId, `Org${n}MSP`);
        assert.equal(org.peerName, `peer0.org${n}.example.com`);
        assert.equal(org.tlsCa.toString(), fs.readFileSync(org.tlsCaFile, 'utf8'), `Org${n}: profile CA = tls/ca.crt`);
      }
    });

    it('server TLS without a host name override (the peer certificate names 127.0.0.1)', { timeout: TEST_TIMEOUT }, async () => {
      const org = orgInfo(1);
      const client = new grpc.Client(org.endpoint, grpc.credentials.createSsl(org.tlsCa));
      const gw = connect({
        client,
        identity: { mspId: org.mspId, credentials: org.certificate },
        signer: signers.newPrivateKeySigner(org.privateKey),
        evaluateOptions: () => ({ deadline: Date.now() + 30_000 }),
      });
      try {
        await assert.rejects(gw.getNetwork(CHANNEL).getContract(RUST_CC).evaluateTransaction('ReadAsset', uniqueId('none')), (err) => {
          assertGatewayError(err, [grpc.status.UNKNOWN], 'evaluate over TLS to 127.0.0.1');
          return true;
        });
      } finally {
        gw.close();
        client.close();
      }
    });

    it('a client trusting another CA (Org2\'s TLS CA) cannot connect to Org1\'s peer', { timeout: TEST_TIMEOUT }, async () => {
      const org = { ...orgInfo(1), tlsCa: orgInfo(2).tlsCa };
      const client = newGrpcClient(org);
      const gw = connect({
        client,
        identity: { mspId: org.mspId, credentials: org.certificate },
        signer: signers.newPrivateKeySigner(org.privateKey),
        evaluateOptions: () => ({ deadline: Date.now() + 10_000 }),
      });
      try {
        await assert.rejects(gw.getNetwork(CHANNEL).getContract(RUST_CC).evaluateTransaction('ReadAsset', 'x'), (err) => {
          assertGatewayError(err, [grpc.status.UNAVAILABLE], 'TLS with the wrong CA');
          return true;
        });
      } finally {
        gw.close();
        client.close();
      }
    });
  });

  it('submit CreateAsset: result, transaction id, commit status VALID with block number', { timeout: TEST_TIMEOUT }, async () => {
    const id = uniqueId('gw-create');
    const commit = await contract.submitAsync('CreateAsset', { arguments: [id, 'blue', '5', 'Tomoko', '300'] });
    // The Rust chaincode's CreateAsset answers nothing (as Fabric's Go sample).
    assert.equal(utf8.decode(commit.getResult()), '', 'CreateAsset result');
    assert.match(commit.getTransactionId(), TX_ID);

    const status = await commit.getStatus();
    assert.equal(status.code, StatusCode.VALID, `validation code ${status.code}`);
    assert.equal(status.successful, true);
    assert.equal(status.transactionId, commit.getTransactionId());
    assert.equal(typeof status.blockNumber, 'bigint');
    assert.ok(status.blockNumber > 0n, `block number ${status.blockNumber}`);

    // Asking again (the transaction is committed by now) gives the same answer.
    const again = await commit.getStatus();
    assert.equal(again.code, StatusCode.VALID);
    assert.equal(again.blockNumber, status.blockNumber);
  });

  it('submitTransaction and evaluateTransaction: ReadAsset sees the committed asset, on both orgs\' peers', { timeout: TEST_TIMEOUT }, async () => {
    const id = uniqueId('gw-read');
    await contract.submitTransaction('CreateAsset', id, 'green', '7', 'Ana', '70');

    const read = await contract.evaluateTransaction('ReadAsset', id);
    assert.equal(utf8.decode(read), assetJson(id, 'green', 7, 'Ana', 70), 'ReadAsset on Org1\'s peer');
    const exists = await contract.evaluateTransaction('AssetExists', id);
    assert.equal(utf8.decode(exists), 'true');

    // Org2's gateway, as Org2's User1: its peer commits the same block
    // (perhaps a moment later).
    const org2 = connectGateway(2);
    try {
      const read2 = await eventually(() => org2.network.getContract(RUST_CC).evaluateTransaction('ReadAsset', id));
      assert.equal(utf8.decode(read2), assetJson(id, 'green', 7, 'Ana', 70), 'ReadAsset on Org2\'s peer');
    } finally {
      org2.close();
    }

    // TransferAsset answers the previous owner; the change is visible.
    const previous = await contract.submitTransaction('TransferAsset', id, 'Bo');
    assert.equal(utf8.decode(previous), 'Ana');
    const after = JSON.parse(utf8.decode(await contract.evaluateTransaction('ReadAsset', id)));
    assert.equal(after.Owner, 'Bo');
  });

  it('the prepared transaction carries endorsements of both orgs (MAJORITY Endorsement) and the chaincode event', { timeout: TEST_TIMEOUT }, async () => {
    const id = uniqueId('gw-endorse');
    await contract.submitTransaction('CreateAsset', id, 'red', '3', 'Max', '30');
    // The commit status came from Org1's peer; TransferAsset is endorsed by
    // Org2's peer as well, which commits the same block on its own time.
    const org2 = connectGateway(2);
    try {
      await eventually(() => org2.network.getContract(RUST_CC).evaluateTransaction('ReadAsset', id));
    } finally {
      org2.close();
    }
    const proposal = contract.newProposal('TransferAsset', { arguments: [id, 'Zoe'] });
    const transaction = await proposal.endorse();
    const { payload, channelHeader } = envelopeHeaders(preparedEnvelope(transaction.getBytes()), 'prepared');
    assert.equal(channelHeader.getChannelId(), CHANNEL);
    assert.equal(channelHeader.getTxId(), proposal.getTransactionId());
    assert.equal(channelHeader.getType(), 3, 'ENDORSER_TRANSACTION');
    const { action, endorsers, event, response } = endorserTransaction(payload, 'prepared');
    assert.deepEqual([...endorsers].sort(), ['Org1MSP', 'Org2MSP'], 'endorsing orgs');
    assert.equal(action.getChaincodeId().getName(), RUST_CC);
    assert.equal(response.getStatus(), 200);
    assert.equal(utf8.decode(response.getPayload_asU8()), 'Max', 'the chaincode response payload');
    assert.equal(utf8.decode(transaction.getResult()), 'Max', 'Transaction.getResult()');
    assert.ok(event, 'no chaincode event in the ChaincodeAction');
    assert.equal(event.getEventName(), 'TransferAsset');
    assert.equal(utf8.decode(event.getPayload_asU8()), assetJson(id, 'red', 3, 'Zoe', 30));
    assert.equal(event.getChaincodeId(), RUST_CC, 'ChaincodeEvent.chaincode_id is filled in by the peer');
    assert.equal(event.getTxId(), proposal.getTransactionId(), 'ChaincodeEvent.tx_id is filled in by the peer');

    const commit = await transaction.submit();
    const status = await commit.getStatus();
    assert.equal(status.code, StatusCode.VALID);
  });

  describe('endorsement failures and chaincode errors', () => {
    it('submit of ReadAsset of a missing asset: EndorseError ABORTED, ErrorDetail with address, mspId and the chaincode message', { timeout: TEST_TIMEOUT }, async () => {
      const missing = uniqueId('gw-missing');
      await assert.rejects(contract.submitTransaction('ReadAsset', missing), (err) => {
        assert.ok(err instanceof EndorseError, `expected an EndorseError, got ${err?.constructor?.name}: ${err}`);
        assertGatewayError(err, [grpc.status.ABORTED], 'submit ReadAsset');
        assert.match(err.transactionId, TX_ID);
        assertDetails(err, 'submit ReadAsset', { mentions: `the asset ${missing} does not exist` });
        return true;
      });
    });

    it('submit of CreateAsset of an existing id: EndorseError ABORTED naming the asset', { timeout: TEST_TIMEOUT }, async () => {
      const id = uniqueId('gw-dup');
      await contract.submitTransaction('CreateAsset', id, 'blue', '1', 'Tom', '10');
      await assert.rejects(contract.submitTransaction('CreateAsset', id, 'blue', '1', 'Tom', '10'), (err) => {
        assert.ok(err instanceof EndorseError, `expected an EndorseError, got ${err?.constructor?.name}: ${err}`);
        assertGatewayError(err, [grpc.status.ABORTED], 'duplicate CreateAsset');
        assertDetails(err, 'duplicate CreateAsset', { mentions: `the asset ${id} already exists` });
        return true;
      });
    });

    it('evaluate of ReadAsset of a missing asset: GatewayError UNKNOWN with the chaincode message', { timeout: TEST_TIMEOUT }, async () => {
      const missing = uniqueId('gw-missing');
      await assert.rejects(contract.evaluateTransaction('ReadAsset', missing), (err) => {
        assertGatewayError(err, [grpc.status.UNKNOWN], 'evaluate ReadAsset');
        assert.ok(
          errorText(err).includes(`the asset ${missing} does not exist`),
          `the chaincode's message is neither in the message nor in the details:\n${errorText(err)}`,
        );
        return true;
      });
    });

    it('an unknown transaction function is the chaincode\'s error, with its name', { timeout: TEST_TIMEOUT }, async () => {
      await assert.rejects(contract.evaluateTransaction('NoSuchFunction', 'x'), (err) => {
        assertGatewayError(err, [grpc.status.UNKNOWN], 'evaluate NoSuchFunction');
        assert.ok(errorText(err).includes('NoSuchFunction'), `the error does not name the function:\n${errorText(err)}`);
        return true;
      });
    });
  });

  describe('bad input', () => {
    const channelCodes = [grpc.status.NOT_FOUND, grpc.status.FAILED_PRECONDITION, grpc.status.UNAVAILABLE];
    const chaincodeCodes = [
      grpc.status.NOT_FOUND,
      grpc.status.FAILED_PRECONDITION,
      grpc.status.ABORTED,
      grpc.status.UNKNOWN,
    ];

    it('evaluate and submit on a channel the peer does not have: error naming the channel', { timeout: TEST_TIMEOUT }, async () => {
      const wrong = conn.gateway.getNetwork('nosuchchannel').getContract(RUST_CC);
      await assert.rejects(wrong.evaluateTransaction('ReadAsset', 'asset1'), (err) => {
        assertGatewayError(err, channelCodes, 'evaluate on nosuchchannel');
        assert.ok(errorText(err).includes('nosuchchannel'), `the error does not name the channel:\n${errorText(err)}`);
        return true;
      });
      await assert.rejects(wrong.submitTransaction('CreateAsset', uniqueId('x'), 'a', '1', 'b', '2'), (err) => {
        assertGatewayError(err, channelCodes, 'submit on nosuchchannel');
        assert.ok(errorText(err).includes('nosuchchannel'), `the error does not name the channel:\n${errorText(err)}`);
        return true;
      });
    });

    it('evaluate and submit of a chaincode not defined on the channel: error naming the chaincode', { timeout: TEST_TIMEOUT }, async () => {
      const wrong = conn.network.getContract('nosuchchaincode');
      await assert.rejects(wrong.evaluateTransaction('ReadAsset', 'asset1'), (err) => {
        assertGatewayError(err, chaincodeCodes, 'evaluate of nosuchchaincode');
        assert.ok(errorText(err).includes('nosuchchaincode'), `the error does not name the chaincode:\n${errorText(err)}`);
        return true;
      });
      await assert.rejects(wrong.submitTransaction('CreateAsset', uniqueId('x'), 'a', '1', 'b', '2'), (err) => {
        assertGatewayError(err, chaincodeCodes, 'submit of nosuchchaincode');
        assert.ok(errorText(err).includes('nosuchchaincode'), `the error does not name the chaincode:\n${errorText(err)}`);
        return true;
      });
    });

    it('chaincode events of a channel the peer does not have: the stream fails naming the channel', { timeout: TEST_TIMEOUT }, async () => {
      const events = await conn.gateway.getNetwork('nosuchchannel').getChaincodeEvents(RUST_CC);
      try {
        await assert.rejects(
          (async () => {
            for await (const e of events) assert.fail(`unexpected event ${JSON.stringify(e)}`);
          })(),
          (err) => {
            assertGatewayError(err, [...channelCodes, grpc.status.PERMISSION_DENIED], 'chaincode events on nosuchchannel');
            assert.ok(errorText(err).includes('nosuchchannel'), `the error does not name the channel:\n${errorText(err)}`);
            return true;
          },
        );
      } finally {
        events.close();
      }
    });
  });

  describe('offline signing (no signer in the Gateway; Node crypto signs the digests)', () => {
    let offline;
    let other;
    let org1;
    before(() => {
      offline = connectGateway(1, { signer: false });
      // Submit and commit status go through a second connection: the server
      // must not tie a transaction to the connection that endorsed it.
      other = connectGateway(1, { signer: false });
      org1 = orgInfo(1);
    });
    after(() => {
      offline?.close();
      other?.close();
    });

    it('newProposal → sign → endorse → sign → submit → sign → commit status VALID', { timeout: TEST_TIMEOUT }, async () => {
      const id = uniqueId('gw-offline');
      const contract = offline.network.getContract(RUST_CC);
      const unsigned = contract.newProposal('CreateAsset', { arguments: [id, 'white', '9', 'Ola', '90'] });
      assert.match(unsigned.getTransactionId(), TX_ID);
      // Without a signature the client refuses to send it.
      await assert.rejects(unsigned.endorse());

      // Proposal: what is signed is SignedProposal.proposal_bytes.
      const proposalBytes = unsigned.getBytes();
      const proposed = decode(gatewayProto.ProposedTransaction, proposalBytes, 'ProposedTransaction');
      const toSign = proposed.getProposal().getProposalBytes_asU8();
      assert.deepEqual(Buffer.from(unsigned.getDigest()), sha256(toSign), 'proposal digest = SHA-256(proposal_bytes)');
      const proposal = offline.gateway.newSignedProposal(proposalBytes, signLowS(toSign, org1.privateKey));
      assert.equal(proposal.getTransactionId(), unsigned.getTransactionId());

      const unsignedTx = await proposal.endorse();
      assert.equal(utf8.decode(unsignedTx.getResult()), '', 'CreateAsset answers nothing');

      // Transaction: what is signed is Envelope.payload.
      const txBytes = unsignedTx.getBytes();
      const prepared = decode(gatewayProto.PreparedTransaction, txBytes, 'PreparedTransaction');
      assert.equal(prepared.getTransactionId(), unsigned.getTransactionId());
      const envelopePayload = prepared.getEnvelope().getPayload_asU8();
      assert.equal(prepared.getEnvelope().getSignature_asU8().length, 0, 'Endorse returns an unsigned envelope');
      assert.deepEqual(Buffer.from(unsignedTx.getDigest()), sha256(envelopePayload), 'transaction digest');
      const transaction = other.gateway.newSignedTransaction(txBytes, signLowS(envelopePayload, org1.privateKey));

      const unsignedCommit = await transaction.submit();
      assert.equal(unsignedCommit.getTransactionId(), unsigned.getTransactionId());

      // Commit status request: what is signed is SignedCommitStatusRequest.request.
      const commitBytes = unsignedCommit.getBytes();
      const signedRequest = decode(gatewayProto.SignedCommitStatusRequest, commitBytes, 'SignedCommitStatusRequest');
      const request = signedRequest.getRequest_asU8();
      const parsed = decode(gatewayProto.CommitStatusRequest, request, 'CommitStatusRequest');
      assert.equal(parsed.getChannelId(), CHANNEL);
      assert.equal(parsed.getTransactionId(), unsigned.getTransactionId());
      assert.deepEqual(Buffer.from(unsignedCommit.getDigest()), sha256(request), 'commit digest');
      const commit = other.gateway.newSignedCommit(commitBytes, signLowS(request, org1.privateKey));

      const status = await commit.getStatus();
      assert.equal(status.code, StatusCode.VALID, `validation code ${status.code}`);
      assert.ok(status.blockNumber > 0n);

      const read = await connectAndRead(id);
      assert.equal(read, assetJson(id, 'white', 9, 'Ola', 90));
    });

    it('a proposal signed with another key is refused at endorsement', { timeout: TEST_TIMEOUT }, async () => {
      const org2 = orgInfo(2);
      const unsigned = offline.network.getContract(RUST_CC).newProposal('CreateAsset', {
        arguments: [uniqueId('gw-badsig'), 'a', '1', 'b', '2'],
      });
      const toSign = decode(gatewayProto.ProposedTransaction, unsigned.getBytes(), 'ProposedTransaction')
        .getProposal()
        .getProposalBytes_asU8();
      // Org1's User1 certificate, Org2's User1 key.
      const proposal = offline.gateway.newSignedProposal(unsigned.getBytes(), signLowS(toSign, org2.privateKey));
      await assert.rejects(proposal.endorse(), (err) => {
        assertGatewayError(
          err,
          [grpc.status.ABORTED, grpc.status.FAILED_PRECONDITION, grpc.status.PERMISSION_DENIED, grpc.status.INVALID_ARGUMENT, grpc.status.UNAUTHENTICATED],
          'endorse with a bad signature',
        );
        return true;
      });
      await assert.rejects(proposal.evaluate(), (err) => {
        assertGatewayError(
          err,
          [grpc.status.ABORTED, grpc.status.FAILED_PRECONDITION, grpc.status.PERMISSION_DENIED, grpc.status.INVALID_ARGUMENT, grpc.status.UNAUTHENTICATED, grpc.status.UNKNOWN],
          'evaluate with a bad signature',
        );
        return true;
      });
    });

    it('a transaction envelope signed with another key is not committed VALID', { timeout: TEST_TIMEOUT }, async () => {
      const org2 = orgInfo(2);
      const id = uniqueId('gw-badtxsig');
      const unsigned = offline.network.getContract(RUST_CC).newProposal('CreateAsset', { arguments: [id, 'a', '1', 'b', '2'] });
      const toSign = decode(gatewayProto.ProposedTransaction, unsigned.getBytes(), 'ProposedTransaction')
        .getProposal()
        .getProposalBytes_asU8();
      const unsignedTx = await offline.gateway.newSignedProposal(unsigned.getBytes(), signLowS(toSign, org1.privateKey)).endorse();
      const payload = decode(gatewayProto.PreparedTransaction, unsignedTx.getBytes(), 'PreparedTransaction')
        .getEnvelope()
        .getPayload_asU8();
      const transaction = offline.gateway.newSignedTransaction(unsignedTx.getBytes(), signLowS(payload, org2.privateKey));
      // Fabric's orderer refuses it (Writers policy: the signature does not
      // verify), so Submit fails ABORTED; if it were ordered, the committer
      // would mark it BAD_CREATOR_SIGNATURE.
      let commit;
      try {
        commit = await transaction.submit();
      } catch (err) {
        // Fabric: "received unsuccessful response from orderer: status=FORBIDDEN, ...".
        assertGatewayError(err, [grpc.status.ABORTED], 'submit with a bad signature');
        assert.ok(errorText(err).includes('FORBIDDEN'), `the orderer's FORBIDDEN is not in the error:\n${errorText(err)}`);
        return;
      }
      const request = decode(gatewayProto.SignedCommitStatusRequest, commit.getBytes(), 'SignedCommitStatusRequest').getRequest_asU8();
      const status = await offline.gateway.newSignedCommit(commit.getBytes(), signLowS(request, org1.privateKey)).getStatus();
      assert.equal(status.code, StatusCode.BAD_CREATOR_SIGNATURE, `validation code ${status.code}`);
    });

    it('commit status: a request signed with another key is PERMISSION_DENIED; an unknown transaction blocks until the deadline', { timeout: TEST_TIMEOUT }, async (t) => {
      const org2 = orgInfo(2);
      const identity = new msp.SerializedIdentity();
      identity.setMspid(org1.mspId);
      identity.setIdBytes(org1.certificate);
      const request = new gatewayProto.CommitStatusRequest();
      request.setChannelId(CHANNEL);
      request.setTransactionId(sha256(uniqueId('no-such-tx')).toString('hex'));
      request.setIdentity(identity.serializeBinary());
      const requestBytes = request.serializeBinary();
      const unsignedBytes = new gatewayProto.SignedCommitStatusRequest();
      unsignedBytes.setRequest(requestBytes);
      const commitFor = (key) =>
        offline.gateway.newSignedCommit(unsignedBytes.serializeBinary(), signLowS(requestBytes, key));

      await assert.rejects(commitFor(org2.privateKey).getStatus(), (err) => {
        assert.ok(err instanceof CommitStatusError, `expected a CommitStatusError, got ${err?.constructor?.name}: ${err}`);
        assertGatewayError(err, [grpc.status.PERMISSION_DENIED], 'commit status with a bad signature');
        return true;
      });

      const started = Date.now();
      await assert.rejects(commitFor(org1.privateKey).getStatus({ deadline: Date.now() + 2000 }), (err) => {
        // The peer answers DEADLINE_EXCEEDED just before the client's
        // deadline (the client's own timer gives the same code).
        assertGatewayError(err, [grpc.status.DEADLINE_EXCEEDED], 'commit status of an unknown transaction');
        return true;
      });
      assert.ok(Date.now() - started >= 1500, 'CommitStatus of an unknown transaction must wait for it, not fail at once');
    });
  });

  describe(`the Node chaincode (fabric-contract-api) deployed as ${NODE_CC}`, () => {
    let node;
    before(() => {
      node = conn.network.getContract(NODE_CC);
    });

    it('submit CreateAsset commits VALID; evaluate ReadAsset matches; TransferAsset answers the previous owner', { timeout: TEST_TIMEOUT }, async () => {
      const id = uniqueId('node-create');
      const commit = await node.submitAsync('CreateAsset', { arguments: [id, 'purple', '4', 'Lin', '40'] });
      assert.equal(utf8.decode(commit.getResult()), assetJson(id, 'purple', 4, 'Lin', 40));
      const status = await commit.getStatus();
      assert.equal(status.code, StatusCode.VALID, `validation code ${status.code}`);
      assert.ok(status.blockNumber > 0n);

      assert.equal(utf8.decode(await node.evaluateTransaction('ReadAsset', id)), assetJson(id, 'purple', 4, 'Lin', 40));
      assert.equal(utf8.decode(await node.submitTransaction('TransferAsset', id, 'Kai')), 'Lin');
      assert.equal(JSON.parse(utf8.decode(await node.evaluateTransaction('ReadAsset', id))).Owner, 'Kai');
      // The two chaincodes have their own namespaces.
      await assert.rejects(contract.evaluateTransaction('ReadAsset', id), (err) => {
        assertGatewayError(err, [grpc.status.UNKNOWN], `ReadAsset of ${id} on ${RUST_CC}`);
        return true;
      });
    });

    it('CreateAsset of an existing id: EndorseError with the Node chaincode\'s message', { timeout: TEST_TIMEOUT }, async () => {
      const id = uniqueId('node-dup');
      await node.submitTransaction('CreateAsset', id, 'blue', '1', 'Tom', '10');
      await assert.rejects(node.submitTransaction('CreateAsset', id, 'blue', '1', 'Tom', '10'), (err) => {
        assert.ok(err instanceof EndorseError, `expected an EndorseError, got ${err?.constructor?.name}: ${err}`);
        assertGatewayError(err, [grpc.status.ABORTED], 'duplicate CreateAsset on the Node chaincode');
        assertDetails(err, 'duplicate CreateAsset on the Node chaincode', { mentions: `The asset ${id} already exists` });
        return true;
      });
    });

    it('the prepared transaction is endorsed by both orgs\' peers, each running the Node chaincode', { timeout: TEST_TIMEOUT }, async () => {
      const id = uniqueId('node-endorse');
      const proposal = node.newProposal('CreateAsset', { arguments: [id, 'grey', '2', 'Sam', '20'] });
      const transaction = await proposal.endorse();
      const { payload } = envelopeHeaders(preparedEnvelope(transaction.getBytes()), 'prepared');
      const { action, endorsers, event } = endorserTransaction(payload, 'prepared');
      assert.deepEqual([...endorsers].sort(), ['Org1MSP', 'Org2MSP']);
      assert.equal(action.getChaincodeId().getName(), NODE_CC);
      assert.equal(event?.getEventName(), 'CreateAsset');
      assert.equal(event?.getChaincodeId(), NODE_CC);
      const status = await (await transaction.submit()).getStatus();
      assert.equal(status.code, StatusCode.VALID);
    });
  });

  /** ReadAsset through a fresh connection (as an unrelated application would). */
  async function connectAndRead(id) {
    const c = connectGateway(1);
    try {
      return utf8.decode(await c.network.getContract(RUST_CC).evaluateTransaction('ReadAsset', id));
    } finally {
      c.close();
    }
  }
});

/** The serialized Envelope inside a PreparedTransaction (Transaction.getBytes()). */
function preparedEnvelope(bytes) {
  return decode(gatewayProto.PreparedTransaction, bytes, 'PreparedTransaction').getEnvelope().serializeBinary();
}
