// Interop test: events through Fabric's own Gateway client (fabric-gateway
// 1.11) from a running Twill network (run.sh starts it and sets
// TWILL_INTEROP_NETWORK): chaincode events (Gateway/ChaincodeEvents) with
// replay, checkpoint resume and live streaming; block events (Deliver,
// DeliverFiltered, DeliverWithPrivateData) in order, hash-chained, with the
// transactions' validation codes.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { checkpointers, StatusCode } from '@hyperledger/fabric-gateway';
import { common, gateway as gatewayProto } from '@hyperledger/fabric-protos';

import {
  CHANNEL,
  NODE_CC,
  RUST_CC,
  assetJson,
  connectGateway,
  orgInfo,
  take,
  uniqueId,
  utf8,
} from './lib/network.mjs';
import { blockHeaderHash, decode, envelopeHeaders, sha256, signLowS } from './lib/fabric.mjs';

const TEST_TIMEOUT = 120_000;
/** Index of TRANSACTIONS_FILTER in common.BlockMetadataIndex. */
const TRANSACTIONS_FILTER = 2;

/** The asset id in an asset-transfer event payload (JSON of the asset). */
function eventAssetId(event) {
  try {
    return JSON.parse(utf8.decode(event.payload)).ID;
  } catch {
    return undefined;
  }
}

describe('chaincode and block events (fabric-gateway 1.11)', { timeout: TEST_TIMEOUT * 10 }, () => {
  let conn;
  let network;
  const id = uniqueId('events');
  /** The three transactions on `id`: name, commit, status, expected payload. */
  const txs = [];

  before(async () => {
    conn = connectGateway(1);
    network = conn.network;
    const contract = network.getContract(RUST_CC);
    const steps = [
      ['CreateAsset', [id, 'red', '10', 'Ana', '100'], assetJson(id, 'red', 10, 'Ana', 100)],
      ['UpdateAsset', [id, 'green', '11', 'Ana', '150'], assetJson(id, 'green', 11, 'Ana', 150)],
      ['TransferAsset', [id, 'Bo'], assetJson(id, 'green', 11, 'Bo', 150)],
    ];
    // One after the other: each in a later block than the one before.
    for (const [name, args, payload] of steps) {
      const commit = await contract.submitAsync(name, { arguments: args });
      const status = await commit.getStatus();
      assert.equal(status.code, StatusCode.VALID, `${name}: validation code ${status.code}`);
      txs.push({ name, txId: commit.getTransactionId(), block: status.blockNumber, payload });
    }
    assert.ok(txs[0].block < txs[1].block && txs[1].block < txs[2].block, 'three consecutive commits, three blocks');
  });
  after(() => conn?.close());

  function assertOurEvents(events, from) {
    events.forEach((e, i) => {
      const tx = txs[from + i];
      assert.equal(e.eventName, tx.name, `event ${i}: name`);
      assert.equal(e.chaincodeName, RUST_CC, `event ${i}: chaincode name`);
      assert.equal(e.transactionId, tx.txId, `event ${i}: transaction id`);
      assert.equal(e.blockNumber, tx.block, `event ${i}: block number = the commit status' block number`);
      assert.equal(utf8.decode(e.payload), tx.payload, `event ${i}: payload`);
    });
  }

  describe('chaincode events', () => {
    it('replayed from a start block: CreateAsset, UpdateAsset, TransferAsset in order, with the tx ids and blocks of their commits', { timeout: TEST_TIMEOUT }, async () => {
      const events = await network.getChaincodeEvents(RUST_CC, { startBlock: txs[0].block });
      const seen = [];
      const ours = await take(events, 3, {
        wanted: (e) => {
          seen.push(e);
          return eventAssetId(e) === id;
        },
        what: `events of ${id}`,
      });
      assertOurEvents(ours, 0);
      // Every event of the stream (other tests' too) is in block order, all of `basic`.
      for (let i = 1; i < seen.length; i++) {
        assert.ok(seen[i].blockNumber >= seen[i - 1].blockNumber, 'events in block order');
      }
      for (const e of seen) assert.equal(e.chaincodeName, RUST_CC);
      assert.ok(seen[0].blockNumber >= txs[0].block, 'no event before the start block');
    });

    it('resumed after a checkpointed event (after_transaction_id): the next event comes next', { timeout: TEST_TIMEOUT }, async () => {
      const checkpointer = checkpointers.inMemory();
      const first = await network.getChaincodeEvents(RUST_CC, { startBlock: txs[0].block, checkpoint: checkpointer });
      const [create] = await take(first, 1, { wanted: (e) => eventAssetId(e) === id, what: 'CreateAsset event' });
      assertOurEvents([create], 0);
      await checkpointer.checkpointChaincodeEvent(create);
      assert.equal(checkpointer.getBlockNumber(), txs[0].block);
      assert.equal(checkpointer.getTransactionId(), txs[0].txId);

      // The checkpoint wins over startBlock.
      const resumed = await network.getChaincodeEvents(RUST_CC, { startBlock: 0n, checkpoint: checkpointer });
      const ours = await take(resumed, 2, { wanted: (e) => eventAssetId(e) === id, what: 'events after the checkpoint' });
      assertOurEvents(ours, 1);
    });

    it('resumed after a checkpointed block: starts at the next block', { timeout: TEST_TIMEOUT }, async () => {
      const checkpointer = checkpointers.inMemory();
      await checkpointer.checkpointBlock(txs[1].block);
      assert.equal(checkpointer.getBlockNumber(), txs[1].block + 1n);
      const resumed = await network.getChaincodeEvents(RUST_CC, { checkpoint: checkpointer });
      const [transfer] = await take(resumed, 1, { wanted: (e) => eventAssetId(e) === id, what: 'TransferAsset event' });
      assertOurEvents([transfer], 2);
    });

    it('without a start block: only events committed after the stream opened', { timeout: TEST_TIMEOUT }, async () => {
      const events = await network.getChaincodeEvents(RUST_CC);
      const contract = network.getContract(RUST_CC);
      // The server may register the stream a moment after the call: keep
      // changing the asset until one of the changes arrives.
      const sent = new Map();
      let stop = false;
      const writer = (async () => {
        for (let i = 0; !stop && i < 30; i++) {
          const commit = await contract.submitAsync('UpdateAsset', { arguments: [id, `c${i}`, '11', 'Bo', '150'] });
          sent.set(commit.getTransactionId(), i);
          await commit.getStatus();
        }
      })();
      try {
        const [live] = await take(events, 1, { wanted: (e) => eventAssetId(e) === id, what: 'a live UpdateAsset event' });
        assert.equal(live.eventName, 'UpdateAsset');
        assert.ok(sent.has(live.transactionId), 'the first event is one of the updates sent after opening, not a replay');
        assert.ok(live.blockNumber > txs[2].block);
      } finally {
        stop = true;
        await writer;
      }
    });

    it('offline-signed chaincode events request', { timeout: TEST_TIMEOUT }, async () => {
      const offline = connectGateway(1, { signer: false });
      try {
        const unsigned = offline.network.newChaincodeEventsRequest(RUST_CC, { startBlock: txs[0].block });
        const bytes = unsigned.getBytes();
        const request = decode(gatewayProto.SignedChaincodeEventsRequest, bytes, 'SignedChaincodeEventsRequest').getRequest_asU8();
        const parsed = decode(gatewayProto.ChaincodeEventsRequest, request, 'ChaincodeEventsRequest');
        assert.equal(parsed.getChannelId(), CHANNEL);
        assert.equal(parsed.getChaincodeId(), RUST_CC);
        assert.deepEqual(Buffer.from(unsigned.getDigest()), sha256(request));
        const signed = offline.gateway.newSignedChaincodeEventsRequest(bytes, signLowS(request, orgInfo(1).privateKey));
        const events = await signed.getEvents();
        const ours = await take(events, 3, { wanted: (e) => eventAssetId(e) === id, what: 'offline-signed events' });
        assertOurEvents(ours, 0);
      } finally {
        offline.close();
      }
    });

    it(`events of the Node chaincode ${NODE_CC} carry its name and payload`, { timeout: TEST_TIMEOUT }, async () => {
      const nodeId = uniqueId('events-node');
      const contract = network.getContract(NODE_CC);
      const commit = await contract.submitAsync('CreateAsset', { arguments: [nodeId, 'pink', '1', 'Eve', '5'] });
      const status = await commit.getStatus();
      assert.equal(status.code, StatusCode.VALID);
      const events = await network.getChaincodeEvents(NODE_CC, { startBlock: status.blockNumber });
      const [event] = await take(events, 1, { wanted: (e) => eventAssetId(e) === nodeId, what: `${NODE_CC} event` });
      assert.equal(event.chaincodeName, NODE_CC);
      assert.equal(event.eventName, 'CreateAsset');
      assert.equal(event.transactionId, commit.getTransactionId());
      assert.equal(event.blockNumber, status.blockNumber);
      assert.equal(utf8.decode(event.payload), assetJson(nodeId, 'pink', 1, 'Eve', 5));
    });
  });

  describe('block events', () => {
    /** Where each of our transactions is: block number → tx id. */
    function ourTxsIn(number) {
      return txs.filter((t) => t.block === BigInt(number));
    }

    it('Deliver: full blocks in order from the start block, hash-chained, our transactions VALID in TRANSACTIONS_FILTER', { timeout: TEST_TIMEOUT }, async () => {
      const count = Number(txs[2].block - txs[0].block) + 1;
      const blocks = await network.getBlockEvents({ startBlock: txs[0].block });
      const got = await take(blocks, count, { what: 'blocks' });
      let previous = null;
      got.forEach((block, i) => {
        assert.ok(block instanceof common.Block, 'a common.Block');
        const header = block.getHeader();
        const number = BigInt(header.getNumber());
        assert.equal(number, txs[0].block + BigInt(i), 'consecutive block numbers');
        if (previous) {
          assert.deepEqual(
            Buffer.from(header.getPreviousHash_asU8()),
            blockHeaderHash(previous.getHeader()),
            `block ${number}: previous_hash = hash of block ${number - 1n}'s header`,
          );
        }
        previous = block;
        const data = block.getData().getDataList_asU8();
        assert.deepEqual(Buffer.from(header.getDataHash_asU8()), sha256(...data), `block ${number}: data_hash`);
        const metadata = block.getMetadata().getMetadataList_asU8();
        assert.ok(metadata.length >= 4, `block ${number}: ${metadata.length} metadata slots`);
        const filter = metadata[TRANSACTIONS_FILTER];
        assert.equal(filter.length, data.length, `block ${number}: one validation code per transaction`);
        const txIds = data.map((env, j) => envelopeHeaders(env, `block ${number} tx ${j}`).channelHeader.getTxId());
        for (const tx of ourTxsIn(number)) {
          const j = txIds.indexOf(tx.txId);
          assert.ok(j >= 0, `block ${number} does not hold ${tx.name} ${tx.txId}`);
          assert.equal(filter[j], StatusCode.VALID, `${tx.name}: validation code in the block`);
          const { channelHeader } = envelopeHeaders(data[j], tx.name);
          assert.equal(channelHeader.getChannelId(), CHANNEL);
          assert.equal(channelHeader.getType(), 3);
        }
      });
    });

    it('Deliver resumed from a block checkpoint starts at the next block', { timeout: TEST_TIMEOUT }, async () => {
      const checkpointer = checkpointers.inMemory();
      await checkpointer.checkpointBlock(txs[0].block);
      const blocks = await network.getBlockEvents({ checkpoint: checkpointer });
      const [block] = await take(blocks, 1, { what: 'block after the checkpoint' });
      assert.equal(BigInt(block.getHeader().getNumber()), txs[0].block + 1n);
    });

    it('DeliverFiltered: filtered blocks in order, transaction ids, validation codes and event names without payloads', { timeout: TEST_TIMEOUT }, async () => {
      const count = Number(txs[2].block - txs[0].block) + 1;
      const blocks = await network.getFilteredBlockEvents({ startBlock: txs[0].block });
      const got = await take(blocks, count, { what: 'filtered blocks' });
      got.forEach((fb, i) => {
        const number = BigInt(fb.getNumber());
        assert.equal(number, txs[0].block + BigInt(i), 'consecutive block numbers');
        assert.equal(fb.getChannelId(), CHANNEL);
        const filtered = fb.getFilteredTransactionsList();
        for (const tx of ourTxsIn(number)) {
          const ftx = filtered.find((f) => f.getTxid() === tx.txId);
          assert.ok(ftx, `filtered block ${number} does not list ${tx.name} ${tx.txId}`);
          assert.equal(ftx.getTxValidationCode(), StatusCode.VALID);
          assert.equal(ftx.getType(), 3, 'ENDORSER_TRANSACTION');
          const actions = ftx.getTransactionActions()?.getChaincodeActionsList() ?? [];
          assert.equal(actions.length, 1, `${tx.name}: one chaincode action`);
          const event = actions[0].getChaincodeEvent();
          assert.equal(event.getEventName(), tx.name);
          assert.equal(event.getChaincodeId(), RUST_CC);
          assert.equal(event.getTxId(), tx.txId);
          assert.equal(event.getPayload_asU8().length, 0, 'filtered events carry no payload');
        }
      });
    });

    it('DeliverWithPrivateData: blocks with (empty) private data, from the start block', { timeout: TEST_TIMEOUT }, async () => {
      const events = await network.getBlockAndPrivateDataEvents({ startBlock: txs[0].block });
      const [first, second] = await take(events, 2, { what: 'blocks with private data' });
      assert.equal(BigInt(first.getBlock().getHeader().getNumber()), txs[0].block);
      assert.equal(BigInt(second.getBlock().getHeader().getNumber()), txs[0].block + 1n);
      assert.equal(first.getPrivateDataMapMap().getLength(), 0, 'no private data in asset-transfer blocks');
    });

    it('offline-signed block events request', { timeout: TEST_TIMEOUT }, async () => {
      const offline = connectGateway(1, { signer: false });
      try {
        const unsigned = offline.network.newBlockEventsRequest({ startBlock: txs[1].block });
        const bytes = unsigned.getBytes();
        const { env, channelHeader } = envelopeHeaders(bytes, 'seek envelope');
        assert.equal(channelHeader.getType(), 5, 'DELIVER_SEEK_INFO');
        assert.equal(channelHeader.getChannelId(), CHANNEL);
        assert.deepEqual(Buffer.from(unsigned.getDigest()), sha256(env.getPayload_asU8()));
        const signed = offline.gateway.newSignedBlockEventsRequest(bytes, signLowS(env.getPayload_asU8(), orgInfo(1).privateKey));
        const blocks = await signed.getEvents();
        const [block] = await take(blocks, 1, { what: 'offline-signed block' });
        assert.equal(BigInt(block.getHeader().getNumber()), txs[1].block);
      } finally {
        offline.close();
      }
    });
  });
});
