/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Unit-level smoke test of the contract logic. The chaincode stub is replaced
 * by an in-memory fake; no peer, no gRPC. Run with:
 *   node --test chaincode-examples/asset-transfer-node/test/
 */

'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const AssetTransfer = require('../lib/assetTransfer');
const { canonicalJson, parseInteger } = AssetTransfer;

/** Minimal stand-in for fabric-shim's ChaincodeStub, backed by a Map. */
class FakeStub {
    constructor() {
        this.state = new Map();
        this.events = [];
    }

    async getState(key) {
        // The real stub resolves to an empty buffer for a missing key.
        return this.state.has(key) ? Buffer.from(this.state.get(key)) : Buffer.alloc(0);
    }

    async putState(key, value) {
        this.state.set(key, Buffer.from(value));
    }

    async deleteState(key) {
        this.state.delete(key);
    }

    setEvent(name, payload) {
        this.events.push({ name, payload: Buffer.from(payload).toString('utf8') });
    }

    // Mirrors the real stub: a promise that is also async-iterable.
    getStateByRange(startKey, endKey) {
        const keys = [...this.state.keys()]
            .filter((k) => (startKey === '' || k >= startKey) && (endKey === '' || k < endKey))
            .sort();
        const rows = keys.map((key) => ({ key, value: this.state.get(key) }));
        const promise = Promise.resolve({ iterator: rows[Symbol.iterator]() });
        promise[Symbol.asyncIterator] = async function* iterate() {
            yield* rows;
        };
        return promise;
    }
}

function newContext() {
    return { stub: new FakeStub() };
}

test('CreateAsset stores canonical JSON and emits an event', async () => {
    const contract = new AssetTransfer();
    const ctx = newContext();

    const returned = await contract.CreateAsset(ctx, 'a1', 'blue', '5', 'Tomoko', '300');
    const expected = '{"AppraisedValue":300,"Color":"blue","ID":"a1","Owner":"Tomoko","Size":5}';
    assert.equal(returned, expected);
    assert.equal(ctx.stub.state.get('a1').toString(), expected);
    assert.deepEqual(ctx.stub.events, [{ name: 'CreateAsset', payload: expected }]);

    await assert.rejects(
        contract.CreateAsset(ctx, 'a1', 'red', '1', 'Brad', '2'),
        { message: 'The asset a1 already exists' },
    );
});

test('CreateAsset rejects non-integer size and value', async () => {
    const contract = new AssetTransfer();
    const ctx = newContext();
    for (const bad of ['5.5', '1e3', '12abc', '', ' 4', '0x10', 'NaN', '99999999999999999999']) {
        await assert.rejects(contract.CreateAsset(ctx, 'x', 'blue', bad, 'Max', '10'), /size/);
        await assert.rejects(contract.CreateAsset(ctx, 'x', 'blue', '1', 'Max', bad), /appraisedValue/);
    }
    assert.equal(ctx.stub.state.size, 0);
    assert.equal(ctx.stub.events.length, 0);
    assert.equal(parseInteger('n', '-7'), -7);
    assert.equal(parseInteger('n', '+7'), 7);
    assert.equal(Object.is(parseInteger('n', '-0'), 0), true);
});

test('ReadAsset returns the stored JSON or a not-found error', async () => {
    const contract = new AssetTransfer();
    const ctx = newContext();
    await contract.InitLedger(ctx);

    const asset = JSON.parse(await contract.ReadAsset(ctx, 'asset3'));
    assert.deepEqual(asset, { AppraisedValue: 500, Color: 'green', ID: 'asset3', Owner: 'Jin Soo', Size: 10 });
    await assert.rejects(contract.ReadAsset(ctx, 'nope'), { message: 'The asset nope does not exist' });
    assert.equal(await contract.AssetExists(ctx, 'asset3'), true);
    assert.equal(await contract.AssetExists(ctx, 'nope'), false);
});

test('TransferAsset returns the previous owner and emits the new asset', async () => {
    const contract = new AssetTransfer();
    const ctx = newContext();
    await contract.InitLedger(ctx);

    const oldOwner = await contract.TransferAsset(ctx, 'asset1', 'Christopher');
    assert.equal(oldOwner, 'Tomoko');
    const stored = ctx.stub.state.get('asset1').toString();
    assert.equal(stored, '{"AppraisedValue":300,"Color":"blue","ID":"asset1","Owner":"Christopher","Size":5}');
    assert.deepEqual(ctx.stub.events, [{ name: 'TransferAsset', payload: stored }]);
    await assert.rejects(contract.TransferAsset(ctx, 'ghost', 'X'), { message: 'The asset ghost does not exist' });
});

test('GetAllAssets lists every asset in key order', async () => {
    const contract = new AssetTransfer();
    const ctx = newContext();
    await contract.InitLedger(ctx);
    await contract.CreateAsset(ctx, 'asset7', 'purple', '20', 'Ana', '900');

    const json = await contract.GetAllAssets(ctx);
    const assets = JSON.parse(json);
    assert.deepEqual(assets.map((a) => a.ID), ['asset1', 'asset2', 'asset3', 'asset4', 'asset5', 'asset6', 'asset7']);
    assert.deepEqual(assets[5], { AppraisedValue: 800, Color: 'white', ID: 'asset6', Owner: 'Michel', Size: 15 });
    // Every element keeps the canonical (sorted) key order.
    assert.ok(json.startsWith('[{"AppraisedValue":300,"Color":"blue","ID":"asset1","Owner":"Tomoko","Size":5},'));
    assert.equal(await new AssetTransfer().GetAllAssets(newContext()), '[]');
});

test('UpdateAsset and DeleteAsset emit events and check existence', async () => {
    const contract = new AssetTransfer();
    const ctx = newContext();
    await contract.InitLedger(ctx);

    await contract.UpdateAsset(ctx, 'asset2', 'orange', '6', 'Brad', '450');
    const updated = '{"AppraisedValue":450,"Color":"orange","ID":"asset2","Owner":"Brad","Size":6}';
    assert.equal(ctx.stub.state.get('asset2').toString(), updated);
    await assert.rejects(contract.UpdateAsset(ctx, 'zz', 'a', '1', 'b', '2'), { message: 'The asset zz does not exist' });

    await contract.DeleteAsset(ctx, 'asset2');
    assert.equal(ctx.stub.state.has('asset2'), false);
    await assert.rejects(contract.DeleteAsset(ctx, 'asset2'), { message: 'The asset asset2 does not exist' });
    assert.deepEqual(ctx.stub.events, [
        { name: 'UpdateAsset', payload: updated },
        { name: 'DeleteAsset', payload: updated },
    ]);
});

test('GetAssetHistory and QueryAssets shape their results', async () => {
    const contract = new AssetTransfer();
    const ctx = newContext();
    const v1 = '{"AppraisedValue":1,"Color":"c","ID":"h","Owner":"o","Size":2}';
    ctx.stub.getHistoryForKey = (key) => {
        assert.equal(key, 'h');
        const rows = [
            { txId: 'tx1', value: Buffer.from(v1), isDelete: false, timestamp: { seconds: 1700000000, nanos: 5 } },
            { txId: 'tx2', value: Buffer.alloc(0), isDelete: true, timestamp: { seconds: '1700000001', nanos: 0 } },
        ];
        return { async *[Symbol.asyncIterator]() { yield* rows; } };
    };
    const history = JSON.parse(await contract.GetAssetHistory(ctx, 'h'));
    assert.deepEqual(history, [
        { asset: JSON.parse(v1), isDelete: false, timestamp: '2023-11-14T22:13:20.000000005Z', txId: 'tx1' },
        { asset: null, isDelete: true, timestamp: '2023-11-14T22:13:21.000000000Z', txId: 'tx2' },
    ]);

    const selector = '{"selector":{"Owner":"o"}}';
    ctx.stub.getQueryResult = (query) => {
        assert.equal(query, selector);
        const rows = [{ key: 'h', value: Buffer.from(v1) }];
        return { async *[Symbol.asyncIterator]() { yield* rows; } };
    };
    assert.equal(await contract.QueryAssets(ctx, selector), `[${v1}]`);
    await assert.rejects(contract.QueryAssets(ctx, '{not json'), /selectorJson is not valid JSON/);
});

test('canonicalJson sorts keys at every depth', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [2, { z: 0, y: null }], c: 'x' } }),
        '{"a":{"c":"x","d":[2,{"y":null,"z":0}]},"b":1}');
    assert.throws(() => canonicalJson({ a: NaN }));
});

test('the shim finds the contract and exactly the expected transactions', () => {
    const Bootstrap = require('fabric-shim/lib/contract-spi/bootstrap');
    const ChaincodeFromContract = require('fabric-shim/lib/contract-spi/chaincodefromcontract');

    const moduleDir = path.resolve(__dirname, '..');
    const info = Bootstrap.getInfoFromContract(moduleDir);
    assert.equal(info.contracts.length, 1);
    assert.equal(info.contracts[0], AssetTransfer);

    const cc = new ChaincodeFromContract([...info.contracts], info.serializers, {}, info.title, info.version);
    const names = cc.metadata.contracts.AssetTransfer.transactions.map((t) => t.name).sort();
    assert.deepEqual(names, [
        'AssetExists', 'CreateAsset', 'DeleteAsset', 'GetAllAssets', 'GetAssetHistory',
        'InitLedger', 'QueryAssets', 'ReadAsset', 'TransferAsset', 'UpdateAsset',
    ]);
    // Unqualified function names ("CreateAsset") resolve to this contract.
    assert.equal(cc.defaultContractName, 'AssetTransfer');
    assert.deepEqual(cc._splitFunctionName('CreateAsset'), { contractName: 'AssetTransfer', function: 'CreateAsset' });
});
