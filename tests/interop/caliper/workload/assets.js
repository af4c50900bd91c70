'use strict';

// Asset ids shared by the two rounds: every worker process of a run gets the
// same TWILL_CALIPER_RUN_ID from run.mjs, so round 2 can read what round 1
// wrote, and a second run on the same network does not collide with the first.
const runId = process.env.TWILL_CALIPER_RUN_ID || `run${process.pid}`;

/**
 * The id of the `index`-th asset created by worker `workerIndex`.
 * @param {number} workerIndex zero-based worker index
 * @param {number} index zero-based transaction index within the worker
 * @return {string} the asset id
 */
function assetId(workerIndex, index) {
    return `caliper-${runId}-w${workerIndex}-${index}`;
}

module.exports = { assetId };
