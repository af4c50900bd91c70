/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Asset transfer chaincode for Twill, written against the stock Fabric Node
 * contract API (fabric-contract-api / fabric-shim). It offers the same
 * transaction functions as Fabric's "basic" asset transfer chaincode, plus
 * chaincode events, key history and rich queries.
 *
 * Everything this chaincode writes to the ledger, emits as an event or returns
 * is serialised by canonicalJson(): object keys sorted, no whitespace. Two
 * endorsers (possibly of different organisations, running different builds of
 * V8) therefore produce byte-identical read/write sets for the same proposal.
 */

'use strict';

const { Contract } = require('fabric-contract-api');

// The six assets written by InitLedger. Field values only; the canonical key
// order is applied by makeAsset()/canonicalJson().
const SEED_ASSETS = [
    ['asset1', 'blue', 5, 'Tomoko', 300],
    ['asset2', 'red', 5, 'Brad', 400],
    ['asset3', 'green', 10, 'Jin Soo', 500],
    ['asset4', 'yellow', 10, 'Max', 600],
    ['asset5', 'black', 15, 'Adriana', 700],
    ['asset6', 'white', 15, 'Michel', 800],
];

/**
 * Deterministic JSON: keys of every object are emitted in ascending code-unit
 * order, arrays keep their order, no insignificant whitespace. Values that
 * JSON.stringify would drop or coerce (undefined, functions, NaN, Infinity)
 * are rejected instead so a bug cannot silently change what gets written.
 */
function canonicalJson(value) {
    if (value === null) {
        return 'null';
    }
    switch (typeof value) {
        case 'string':
        case 'boolean':
            return JSON.stringify(value);
        case 'number':
            if (!Number.isFinite(value)) {
                throw new Error(`cannot serialise non-finite number ${value}`);
            }
            return JSON.stringify(value);
        case 'object':
            if (Array.isArray(value)) {
                return `[${value.map(canonicalJson).join(',')}]`;
            }
            if (typeof value.toJSON === 'function') {
                return canonicalJson(value.toJSON());
            }
            return `{${Object.keys(value)
                .filter((k) => value[k] !== undefined)
                .sort()
                .map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`)
                .join(',')}}`;
        default:
            throw new Error(`cannot serialise a value of type ${typeof value}`);
    }
}

/** Rejects a missing argument with a message naming it. */
function requireString(name, value) {
    if (typeof value !== 'string') {
        throw new Error(`Argument ${name} is required`);
    }
    return value;
}

/** Like requireString, but an empty string is also rejected. */
function requireNonEmpty(name, value) {
    requireString(name, value);
    if (value.length === 0) {
        throw new Error(`Argument ${name} must not be empty`);
    }
    return value;
}

/**
 * Strict integer parsing. Transaction arguments arrive as strings; only an
 * optional sign followed by decimal digits is accepted ("12", "-3", "+7").
 * Things that parseInt/Number would happily accept ("12abc", "1e3", "0x10",
 * "1.5", " 4", "") are refused, as are values outside the safe-integer range.
 * A JS number that already is a safe integer is accepted as is.
 */
function parseInteger(name, value) {
    if (typeof value === 'number') {
        if (Number.isSafeInteger(value)) {
            return value;
        }
        throw new Error(`${name} must be an integer, got ${value}`);
    }
    if (typeof value !== 'string') {
        throw new Error(`Argument ${name} is required`);
    }
    if (!/^[+-]?[0-9]+$/.test(value)) {
        throw new Error(`${name} must be an integer, got "${value}"`);
    }
    const parsed = Number(value);
    if (!Number.isSafeInteger(parsed)) {
        throw new Error(`${name} is out of range: "${value}"`);
    }
    // Normalise "-0" to 0 so it serialises the same way as "0".
    return parsed === 0 ? 0 : parsed;
}

/** Builds an asset object; key order is irrelevant, canonicalJson sorts. */
function makeAsset(id, color, size, owner, appraisedValue) {
    return {
        AppraisedValue: appraisedValue,
        Color: color,
        ID: id,
        Owner: owner,
        Size: size,
    };
}

/** Decodes a ledger value; falls back to the raw text when it is not JSON. */
function decodeValue(bytes) {
    const text = Buffer.from(bytes).toString('utf8');
    try {
        return JSON.parse(text);
    } catch (err) {
        return text;
    }
}

/** Turns a protobuf Timestamp ({seconds, nanos}) into an RFC 3339 UTC string. */
function timestampToIso(ts) {
    if (!ts) {
        return null;
    }
    const seconds = Number(ts.seconds || 0);
    const nanos = Number(ts.nanos || 0);
    const base = new Date(seconds * 1000).toISOString(); // "...T..:..:..000Z"
    const fraction = String(nanos).padStart(9, '0');
    return `${base.slice(0, 19)}.${fraction}Z`;
}

/** Collects every {key, value} from a state iterator into an array. */
async function collectValues(iterable) {
    const out = [];
    for await (const entry of iterable) {
        out.push(decodeValue(entry.value));
    }
    return out;
}

class AssetTransfer extends Contract {
    async InitLedger(ctx) {
        for (const [id, color, size, owner, value] of SEED_ASSETS) {
            const asset = makeAsset(id, color, size, owner, value);
            await ctx.stub.putState(id, Buffer.from(canonicalJson(asset)));
        }
    }

    async CreateAsset(ctx, id, color, size, owner, appraisedValue) {
        requireNonEmpty('id', id);
        requireString('color', color);
        requireString('owner', owner);
        const asset = makeAsset(
            id,
            color,
            parseInteger('size', size),
            owner,
            parseInteger('appraisedValue', appraisedValue),
        );
        if (await this.AssetExists(ctx, id)) {
            throw new Error(`The asset ${id} already exists`);
        }
        const json = canonicalJson(asset);
        await ctx.stub.putState(id, Buffer.from(json));
        ctx.stub.setEvent('CreateAsset', Buffer.from(json));
        return json;
    }

    async ReadAsset(ctx, id) {
        requireString('id', id);
        const bytes = await ctx.stub.getState(id);
        if (!bytes || bytes.length === 0) {
            throw new Error(`The asset ${id} does not exist`);
        }
        return Buffer.from(bytes).toString('utf8');
    }

    async UpdateAsset(ctx, id, color, size, owner, appraisedValue) {
        requireString('id', id);
        requireString('color', color);
        requireString('owner', owner);
        const asset = makeAsset(
            id,
            color,
            parseInteger('size', size),
            owner,
            parseInteger('appraisedValue', appraisedValue),
        );
        if (!(await this.AssetExists(ctx, id))) {
            throw new Error(`The asset ${id} does not exist`);
        }
        const json = canonicalJson(asset);
        await ctx.stub.putState(id, Buffer.from(json));
        ctx.stub.setEvent('UpdateAsset', Buffer.from(json));
    }

    async DeleteAsset(ctx, id) {
        // ReadAsset throws the "does not exist" error for us.
        const json = await this.ReadAsset(ctx, id);
        await ctx.stub.deleteState(id);
        ctx.stub.setEvent('DeleteAsset', Buffer.from(json));
    }

    async AssetExists(ctx, id) {
        requireString('id', id);
        const bytes = await ctx.stub.getState(id);
        return Boolean(bytes) && bytes.length > 0;
    }

    async TransferAsset(ctx, id, newOwner) {
        requireString('newOwner', newOwner);
        const asset = JSON.parse(await this.ReadAsset(ctx, id));
        const oldOwner = asset.Owner;
        asset.Owner = newOwner;
        const json = canonicalJson(asset);
        await ctx.stub.putState(id, Buffer.from(json));
        ctx.stub.setEvent('TransferAsset', Buffer.from(json));
        return oldOwner;
    }

    async GetAllAssets(ctx) {
        const assets = await collectValues(ctx.stub.getStateByRange('', ''));
        return canonicalJson(assets);
    }

    async GetAssetHistory(ctx, id) {
        requireString('id', id);
        const history = [];
        for await (const mod of ctx.stub.getHistoryForKey(id)) {
            const deleted = Boolean(mod.isDelete);
            const hasValue = mod.value && mod.value.length > 0;
            history.push({
                asset: deleted || !hasValue ? null : decodeValue(mod.value),
                isDelete: deleted,
                timestamp: timestampToIso(mod.timestamp),
                txId: mod.txId,
            });
        }
        return canonicalJson(history);
    }

    async QueryAssets(ctx, selectorJson) {
        requireNonEmpty('selectorJson', selectorJson);
        try {
            JSON.parse(selectorJson);
        } catch (err) {
            throw new Error(`selectorJson is not valid JSON: ${err.message}`);
        }
        const assets = await collectValues(ctx.stub.getQueryResult(selectorJson));
        return canonicalJson(assets);
    }
}

module.exports = AssetTransfer;
module.exports.AssetTransfer = AssetTransfer;
module.exports.canonicalJson = canonicalJson;
module.exports.parseInteger = parseInteger;
